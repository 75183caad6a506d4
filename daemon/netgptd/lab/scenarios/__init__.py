"""Every module here registers its scenarios on import.

A module whose optional library (the ``lab`` extra) is missing cannot be
imported: it is listed in ``UNAVAILABLE`` under its scenario name (the
module's name with dashes) with what it needs, so ``netgptd lab list``
and ``lab run`` can say so instead of failing.
"""

from __future__ import annotations

import importlib
import pkgutil

UNAVAILABLE: dict[str, str] = {}


def load_all() -> None:
    for module in pkgutil.iter_modules(__path__):
        if module.name.startswith("_"):
            continue
        try:
            importlib.import_module(f"{__name__}.{module.name}")
        except ModuleNotFoundError as exc:
            UNAVAILABLE[module.name.replace("_", "-")] = f"python:{exc.name} (pip install -e '.[lab]')"
