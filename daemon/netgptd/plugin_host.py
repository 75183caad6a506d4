"""Plugins: pluggy hooks, found through the ``netgptd.plugins`` entry points.

A plugin is a factory registered under a name in the ``netgptd.plugins``
entry-point group; it is called with its settings (the keyword arguments of
its ``__init__``, checked against their annotations before the call, so a
wrong key or type is named) and returns an object with ``@hookimpl``
methods. Every hook implementation is called on its own: one that raises is
logged and counted, and the others still run.

Events go out in batches (``emit_batch``): a plugin that implements
``netgpt_events`` gets a batch in one call, the others an event per call.
A plugin whose class sets ``LOGS_EACH_FLOW = True`` (it writes every flow
out: EVE, MQTT) gets the flows of a flood bounded by the flood log
(:mod:`netgptd.flood_log`): past the budget, a summary instead; the
others (detectors, counters) get every flow.

Hooks run in the pipeline's asyncio loop thread. ``netgpt_start`` and
``netgpt_close`` may return an awaitable (a plugin with network I/O starts
its tasks there and flushes in close); the host awaits it, close with a
deadline.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import typing
from collections import Counter
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Awaitable, Callable, Mapping, NamedTuple

import pluggy
import structlog

from netgptd.config import FloodLogSettings, fits, type_name
from netgptd.eve import stats_of, with_host
from netgptd.flood_log import FloodLog

PROJECT = "netgptd"
ENTRY_POINT_GROUP = "netgptd.plugins"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)
log = structlog.get_logger(__name__)


async def _no_model_swap(folder: Path) -> Mapping[str, str]:
    raise RuntimeError("this sensor context cannot change its model")


@dataclass(frozen=True)
class SensorContext:
    """What a plugin may know of the sensor it runs in (given to ``netgpt_start``)."""

    site: str = "default"
    sensor: str = "sensor"
    state_dir: Path = Path(".")
    location: str = ""  # the site profile, for the edge LLM's prompts
    role: str = ""
    version: str = ""
    model: Mapping[str, str] = field(default_factory=dict)  # name, version, provider; empty without a model
    # Hands an event to every plugin, for what a plugin produces later (a forecast, an answer).
    # Call it in the loop thread (from another thread: loop.call_soon_threadsafe(emit, event)).
    emit: Callable[[dict[str, Any]], None] = field(default=lambda event: None, compare=False, repr=False)
    # Serves the model bundle in a folder from the next batch on (a rollout) and returns its info; raises
    # BundleError (the running model stays). Call it in the loop thread and await it.
    serve_model: Callable[[Path], Awaitable[Mapping[str, str]]] = field(default=_no_model_swap, compare=False,
                                                                         repr=False)  # fmt: skip


class HookSpecs:
    @hookspec
    def netgpt_start(self, sensor: SensorContext) -> Awaitable[None] | None:
        """The pipeline starts; called inside its running asyncio loop."""

    @hookspec
    def netgpt_event(self, event: dict[str, Any]) -> list[dict[str, Any]] | None:
        """An EVE event (flow, alert, stats, ...) ready to leave the sensor.

        A detector returns the events it raises (alerts); they go to every
        plugin in turn, but what they raise in answer is not passed on again.
        """

    @hookspec
    def netgpt_events(self, events: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
        """A batch of EVE events, in order: as ``netgpt_event`` for each (a plugin that implements this gets
        every event through it, and ``netgpt_event`` is not called)."""

    @hookspec
    def netgpt_batch(self, size: int, seconds: float) -> None:
        """One model inference ran: how many flows, and its wall time."""

    @hookspec
    def netgpt_status(self) -> dict[str, Any] | None:
        """The plugin's own counters and gauges, for the periodic stats event
        (under ``stats.plugins.<name>``)."""

    @hookspec
    def netgpt_reopen(self) -> None:
        """SIGHUP: reopen the files the plugin writes (logrotate moved them away)."""

    @hookspec
    def netgpt_health(self) -> str | None:
        """Why the plugin is dead (only a restart would mend it), or None while it works.

        A plugin that is merely degraded (a broker away, its outbox holding
        the messages; a disk full, lines counted as lost) says so in
        ``netgpt_status`` and returns None here: restarting would not help.
        """

    @hookspec
    def netgpt_close(self) -> Awaitable[None] | None:
        """The pipeline stops: flush and release what the plugin holds."""


class PluginError(Exception):
    """A plugin that cannot be found or started (message names it)."""


def available() -> dict[str, Any]:
    """Installed plugin factories by name."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def check_settings(name: str, factory: Any, settings: Mapping[str, Any]) -> None:
    """Refuse unknown keys and values of the wrong type, naming ``[plugins.NAME] key``.

    The keys are the factory's keyword parameters, or the fields of its
    ``SETTINGS`` dataclass when it declares one (a plugin taking ``**settings``).
    """
    declared = getattr(factory, "SETTINGS", None)
    if declared is not None and dataclasses.is_dataclass(declared):
        fields = {f.name: f for f in dataclasses.fields(declared)}
        hints, takes_any = typing.get_type_hints(declared), False
    else:
        target = factory.__init__ if inspect.isclass(factory) else factory
        params = inspect.signature(factory).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        fields = {k: p for k, p in params.items() if p.kind is not inspect.Parameter.VAR_KEYWORD}
        try:
            hints = typing.get_type_hints(target)
        except Exception:  # unresolvable annotations: leave the types to the plugin
            hints = {}
    for key, value in settings.items():
        if key not in fields:
            if takes_any:
                continue
            raise PluginError(f"[plugins.{name}] {key}: unknown setting (known: {', '.join(fields) or 'none'})")
        hint = hints.get(key, Any)
        if not fits(value, hint):
            raise PluginError(f"[plugins.{name}] {key}: expected {type_name(hint)}, got {type(value).__name__} {value!r}")


def factory_of(name: str) -> Any:
    """The installed factory of plugin ``name`` (PluginError when there is none)."""
    installed = available()
    if name not in installed:
        raise PluginError(f"[plugins.{name}]: unknown plugin (installed: {', '.join(sorted(installed)) or 'none'})")
    return installed[name].load()


def load_plugin(name: str, settings: Mapping[str, Any]) -> object:
    """Find plugin ``name``, check its settings and make it (PluginError names what is wrong)."""
    factory = factory_of(name)
    check_settings(name, factory, settings)
    try:
        return factory(**settings)
    except (TypeError, ValueError, OSError) as exc:
        raise PluginError(f"[plugins.{name}] {exc}") from None


class _Receiver(NamedTuple):
    """A plugin that takes events: its hook, whether that takes batches, whether it writes each flow out."""

    name: str
    function: Callable[..., Any]
    batched: bool
    logs_each_flow: bool


class PluginHost:
    """Loads the enabled plugins and fans hook calls out to them."""

    def __init__(self, enabled: Mapping[str, Mapping[str, Any]], host: str = "",
                 flood_log: FloodLogSettings | None = None) -> None:  # fmt: skip
        self.host = host  # the sensor's name: every event handed out carries it (EVE's ``host``)
        self.flood_log = FloodLog(flood_log)
        self.manager = pluggy.PluginManager(PROJECT)
        self.manager.add_hookspecs(HookSpecs)
        self.errors: Counter[str] = Counter()
        self.emitted: Counter[str] = Counter()  # events handed to the plugins, by event_type (rule alerts too)
        self.settings: dict[str, dict[str, Any]] = {}
        for name, settings in enabled.items():
            self.add(load_plugin(name, settings), name)
            self.settings[name] = dict(settings)

    def add(self, plugin: object, name: str) -> None:
        """Register a plugin object (from an entry point, or in-process)."""
        self.manager.register(plugin, name=name)

    def _call(self, hook: str, names: set[str] | None = None, **kwargs: Any) -> list[tuple[str, Any]]:
        """Call every implementation of ``hook`` (of the plugins in ``names``, if given); (name, result) pairs."""
        results = []
        for impl in getattr(self.manager.hook, hook).get_hookimpls():
            if names is not None and impl.plugin_name not in names:
                continue
            try:
                result = impl.function(**kwargs)
            except Exception:  # a plugin's failure must not stop the pipeline
                self.errors[impl.plugin_name] += 1
                log.exception("plugin_failed", plugin=impl.plugin_name, hook=hook)
                continue
            if result:
                results.append((impl.plugin_name, result))
        return results

    async def _await_all(self, hook: str, pending: list[tuple[str, Any]], timeout: float) -> None:
        for name, result in pending:
            if not inspect.isawaitable(result):
                continue
            try:
                await asyncio.wait_for(result, timeout)
            except Exception as exc:  # noqa: BLE001 -- counted and logged like any plugin failure
                self.errors[name] += 1
                log.error("plugin_failed", plugin=name, hook=hook, error=f"{type(exc).__name__}: {exc}")

    async def start(self, sensor: SensorContext, names: set[str] | None = None, timeout: float = 10.0) -> None:
        await self._await_all("netgpt_start", self._call("netgpt_start", names, sensor=sensor), timeout)

    def emit(self, event: dict[str, Any]) -> None:
        self.emit_batch([event])

    def emit_batch(self, events: list[dict[str, Any]]) -> None:
        """Hand events to every plugin, in order; what detectors raise (alerts) goes to every plugin in turn,
        but what they raise in answer is not passed on again.

        The plugins that write each flow (``LOGS_EACH_FLOW``) get the events with each raised alert right after
        the flow that raised it, and a flood's flows bounded by the flood log (its summaries in their stead)."""
        if not events:
            return
        for event in events:
            kind = event.get("event_type", "")
            self.emitted[kind] += 1
            with_host(event, self.host)
            if kind == "stats" and (stats := stats_of(event)) is not None:
                stats["flood_log"] = self.flood_log.status()
        receivers = self._receivers()
        raised: list[dict[str, Any]] = []
        for receiver in receivers:
            if not receiver.logs_each_flow:
                raised += self._deliver(receiver, events)
        summaries: list[dict[str, Any]] = []
        logged = self._bounded(events, raised, summaries)
        for event in (*raised, *summaries):
            self.emitted[event.get("event_type", "")] += 1
            with_host(event, self.host)
        late: list[dict[str, Any]] = []  # what plugins that log each flow raise: passed to the others at the end
        for receiver in receivers:
            if receiver.logs_each_flow:
                late += self._deliver(receiver, logged)
        for event in late:
            self.emitted[event.get("event_type", "")] += 1
            with_host(event, self.host)
        for receiver in receivers:
            if not receiver.logs_each_flow:
                self._deliver(receiver, [*raised, *summaries, *late])
            elif late:
                self._deliver(receiver, late)

    def flush_flood_log(self) -> None:
        """Emit the summaries of every flood's open window (the capture ended, the daemon stops)."""
        self.emit_batch(self.flood_log.expire(flush=True))

    def _bounded(self, events: list[dict[str, Any]], raised: list[dict[str, Any]],
                 summaries: list[dict[str, Any]]) -> list[dict[str, Any]]:  # fmt: skip
        """What the plugins that log each flow get: the events the flood log admits, each raised alert after
        the flow that raised it (the others at the end), and the summaries of the windows that closed (also
        added to ``summaries``)."""
        flood_log = self.flood_log
        by_flow: dict[Any, list[dict[str, Any]]] = {}
        for alert in raised:
            by_flow.setdefault(alert.get("flow_id"), []).append(alert)
        out: list[dict[str, Any]] = []

        def alerted(alerts: list[dict[str, Any]]) -> None:
            for alert in alerts:
                out.append(alert)
                dropped = flood_log.note_alert(alert)  # a flood dropped for room: its summary
                out.extend(dropped)
                summaries.extend(dropped)

        for event in events:
            if event.get("event_type") != "flow":
                out.append(event)
                continue
            if flood_log.admit(event):
                out.append(event)
            if by_flow:
                alerted(by_flow.pop(event.get("flow_id"), []))
        for alerts in by_flow.values():
            alerted(alerts)
        closed = flood_log.expire()
        summaries += closed
        return out + closed

    def _receivers(self) -> list[_Receiver]:
        """Each plugin that takes events, through ``netgpt_events`` where it implements it."""
        receivers: dict[str, _Receiver] = {}
        for hook, batched in (("netgpt_event", False), ("netgpt_events", True)):
            for impl in getattr(self.manager.hook, hook).get_hookimpls():
                logs = bool(getattr(impl.plugin, "LOGS_EACH_FLOW", False))
                receivers[impl.plugin_name] = _Receiver(impl.plugin_name, impl.function, batched, logs)
        return list(receivers.values())

    def _deliver(self, receiver: _Receiver, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Give one plugin events (in one call, or one per call); what it raised. A failure is logged and
        counted; a plugin that takes batches misses the rest of that batch."""
        name, function, batched, _ = receiver
        raised: list[dict[str, Any]] = []
        for batch in ([events] if batched else events) if events else ():
            try:
                result = function(events=batch) if batched else function(event=batch)
            except Exception:  # a plugin's failure must not stop the pipeline
                self.errors[name] += 1
                log.exception("plugin_failed", plugin=name, hook="netgpt_events" if batched else "netgpt_event")
                continue
            if result:
                raised += result
        return raised

    def batch(self, size: int, seconds: float) -> None:
        self._call("netgpt_batch", size=size, seconds=seconds)

    def status(self) -> dict[str, Any]:
        """Each plugin's own status, by plugin name."""
        return {name: result for name, result in self._call("netgpt_status")}

    def reopen(self) -> None:
        self._call("netgpt_reopen")

    def dead(self) -> dict[str, str]:
        """The enabled plugins that no longer work, with the reason (empty while all work).

        An enabled plugin that is not registered any more is dead, whatever
        it would say; the others answer ``netgpt_health`` themselves.
        """
        dead = {name: "not running" for name in self.settings if not self.manager.has_plugin(name)}
        dead.update({name: str(reason) for name, reason in self._call("netgpt_health")})
        return dead

    async def aclose(self, names: set[str] | None = None, timeout: float = 10.0) -> None:
        """Close plugins (all, or those in ``names``), awaiting their flushes up to ``timeout`` each."""
        await self._await_all("netgpt_close", self._call("netgpt_close", names), timeout)
        for name in names or ():  # at a stop (names None) they stay registered: stats still ask them
            if self.manager.has_plugin(name):
                self.manager.unregister(name=name)
            self.settings.pop(name, None)

    def close(self) -> None:
        """Close every plugin without a loop (replay): awaitables are run to completion."""
        pending = self._call("netgpt_close")
        if any(inspect.isawaitable(r) for _, r in pending):
            asyncio.run(self._await_all("netgpt_close", pending, 10.0))
