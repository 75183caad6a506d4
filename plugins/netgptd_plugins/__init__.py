"""First-party netgptd plugins, each found through the ``netgptd.plugins`` entry points."""
