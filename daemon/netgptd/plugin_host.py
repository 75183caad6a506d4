"""Plugins: pluggy hooks, found through the ``netgptd.plugins`` entry points.

A plugin is a factory registered under a name in the ``netgptd.plugins``
entry-point group; it is called with its settings (a dict) and returns an
object with ``@hookimpl`` methods. Every hook implementation is called on
its own: one that raises is logged and counted, and the others still run.
"""

from __future__ import annotations

from collections import Counter
from importlib.metadata import entry_points
from typing import Any, Mapping

import pluggy
import structlog

PROJECT = "netgptd"
ENTRY_POINT_GROUP = "netgptd.plugins"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)
log = structlog.get_logger(__name__)


class HookSpecs:
    @hookspec
    def netgpt_event(self, event: dict[str, Any]) -> list[dict[str, Any]] | None:
        """An EVE event (flow, alert, stats, ...) ready to leave the sensor.

        A detector returns the events it raises (alerts); they go to every
        plugin in turn, but what they raise in answer is not passed on again.
        """

    @hookspec
    def netgpt_close(self) -> None:
        """The pipeline stops: flush and release what the plugin holds."""


class PluginError(Exception):
    """A plugin that cannot be found or started (message names it)."""


def available() -> dict[str, Any]:
    """Installed plugin factories by name."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


class PluginHost:
    """Loads the enabled plugins and fans events out to them."""

    def __init__(self, enabled: Mapping[str, Mapping[str, Any]]) -> None:
        self.manager = pluggy.PluginManager(PROJECT)
        self.manager.add_hookspecs(HookSpecs)
        self.errors: Counter[str] = Counter()
        installed = available()
        for name, settings in enabled.items():
            if name not in installed:
                known = ", ".join(sorted(installed)) or "none"
                raise PluginError(f"unknown plugin {name!r} (installed: {known})")
            factory = installed[name].load()
            try:
                plugin = factory(**settings)
            except (TypeError, ValueError, OSError) as exc:
                raise PluginError(f"plugin {name!r}: {exc}") from None
            self.manager.register(plugin, name=name)

    def add(self, plugin: object, name: str) -> None:
        """Register an in-process plugin object (not from an entry point)."""
        self.manager.register(plugin, name=name)

    def _call(self, hook: str, **kwargs: Any) -> list[Any]:
        results = []
        for impl in getattr(self.manager.hook, hook).get_hookimpls():
            try:
                result = impl.function(**kwargs)
            except Exception:  # a plugin's failure must not stop the pipeline
                self.errors[impl.plugin_name] += 1
                log.exception("plugin_failed", plugin=impl.plugin_name, hook=hook)
                continue
            if result:
                results.append(result)
        return results

    def emit(self, event: dict[str, Any]) -> None:
        for raised in self._call("netgpt_event", event=event):
            for new_event in raised:
                self._call("netgpt_event", event=new_event)

    def close(self) -> None:
        self._call("netgpt_close")
