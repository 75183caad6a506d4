"""What ``netgptd run`` needs of this machine, checked before it starts and by ``check-config``.

A configuration can be valid and the machine still not ready for it: the
capture file missing or not a capture, the interface absent, dumpcap or
tshark not installed, an extra that an enabled plugin needs not installed,
the state directory not writable, more flows allowed than memory holds;
and an MQTT plugin's topic prefix with this sensor's names must suit a broker.
``run`` and ``check-config`` run the same checks, so "configuration OK"
means that ``run`` starts. Each problem is one ``ConfigError`` naming the
key and the reason. Nothing is created or started here.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

from netgptd.capture.file_source import capture_file_problem
from netgptd.config import FLOW_BYTES, ConfigError, SensorSettings, Settings
from netgptd.mqtt_names import check_mqtt
from netgptd.plugin_host import PluginError, factory_of

NET_DEVICES = Path("/sys/class/net")
ANY_INTERFACE = "any"  # libpcap's pseudo-interface: every interface
CAPTURE_TOOLS = {"live": ("dumpcap",), "pyshark": ("tshark", "dumpcap")}  # pyshark runs tshark, tshark runs dumpcap
LLM_MODULES = ("torch", "transformers")
LLM_EXTRA = "pip install 'netgptd[train]'"
# Plugin settings that load the edge LLM: (setting, value) by plugin; None: the plugin always does.
NEEDS_LLM: dict[str, tuple[str, Any] | None] = {"trends": ("forecaster", "edge_llm"), "intents": None,
                                                 "ask": ("intents", True)}  # fmt: skip


def check_machine(settings: Settings) -> None:
    """Everything below; the first problem found is raised."""
    check_source(settings)
    check_state_dir(Path(settings.sensor.state_dir))
    check_memory(settings.flows.max_flows, physical_memory())
    for name, values in settings.plugins.items():
        check_extras(name, plugin_settings(factory_of(name), values))


def check_source(settings: Settings) -> None:
    """The capture file exists and is a capture; the interface exists and the tools that capture on it are here."""
    kind, target = settings.source_kind, settings.source_target
    if kind == "pcap":
        problem = capture_file_problem(Path(target))
        if problem:
            raise ConfigError(f"[capture] source: {problem}")
        return
    if target != ANY_INTERFACE:
        if "/" in target or target in (".", "..") or len(target) > 15:
            raise ConfigError(f"[capture] source: {target!r} is not an interface name")
        if NET_DEVICES.is_dir() and not (NET_DEVICES / target).exists():
            known = sorted(p.name for p in NET_DEVICES.iterdir())
            raise ConfigError(f"[capture] source: no interface {target!r} here (there are: {', '.join(known)})")
    for tool in CAPTURE_TOOLS[kind]:
        if shutil.which(tool) is None:
            raise ConfigError(f"[capture] source: {kind}: captures through {tool}, which is not installed "
                              f"(apt-get install tshark)")  # fmt: skip


def check_state_dir(path: Path) -> None:
    """``path`` is a directory this process can write in, or one it can create."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"[sensor] state_dir: cannot create {path}: {existing} is not a directory")
    try:  # the real test (a read-only mount, ACLs); the file leaves no trace
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        verb = "cannot write in" if existing == path else "cannot create"
        raise ConfigError(f"[sensor] state_dir: {verb} {path}: {exc.strerror or exc} ({existing})") from None


def physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return None


def check_memory(max_flows: int, memory: int | None) -> None:
    """At about FLOW_BYTES a flow, ``max_flows`` fits in this machine's memory."""
    if memory is not None and max_flows * FLOW_BYTES > memory:
        raise ConfigError(f"[flows] max_flows: {max_flows:,} flows take about {max_flows * FLOW_BYTES / 2**30:.1f} GiB "
                          f"(~{FLOW_BYTES} bytes each); this machine has {memory / 2**30:.1f} GiB")  # fmt: skip


def plugin_settings(factory: Any, values: Mapping[str, Any]) -> dict[str, Any]:
    """A plugin's settings as it will get them: ``values`` over the defaults of its keyword parameters."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # no signature to read: only what is configured
        return dict(values)
    defaults = {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}
    return defaults | dict(values)


def check_mqtt_names(name: str, settings: Mapping[str, Any], sensor: SensorSettings) -> None:
    """A plugin that talks MQTT (it has ``topic_prefix`` and ``keepalive``) gets a prefix and keep-alive
    a broker takes, with this sensor's names filled in."""
    if "topic_prefix" in settings and "keepalive" in settings:
        try:
            check_mqtt(settings["topic_prefix"], settings["keepalive"], sensor.site, sensor.sensor)
        except ValueError as exc:
            raise PluginError(f"[plugins.{name}] {exc}") from None


def check_extras(name: str, settings: Mapping[str, Any]) -> None:
    """torch and transformers are installed where the plugin's settings load the edge LLM."""
    if name not in NEEDS_LLM:
        return
    needs = NEEDS_LLM[name]
    if needs is not None and settings.get(needs[0]) != needs[1]:
        return
    missing = [m for m in LLM_MODULES if not _installed(m)]
    if missing:
        what = f"[plugins.{name}]" if needs is None else f"[plugins.{name}] {needs[0]} = {json.dumps(needs[1])}"
        hint = "" if needs is None or needs[1] is not True else f", or set {needs[0]} = false"
        raise ConfigError(f"{what}: the edge LLM needs {' and '.join(missing)}, not installed ({LLM_EXTRA}{hint})")


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False
