import sys

from netgptd.cli import main

sys.exit(main())
