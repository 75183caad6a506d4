"""What ``netgptd run`` needs of this machine, checked before it starts and by ``check-config``.

A configuration can be valid and the machine still not ready for it: the
capture file missing or not a capture, the interface absent, dumpcap or
tshark not installed, an extra that an enabled plugin needs not installed,
the state directory not writable, more flows allowed than memory holds,
a file a plugin opens when it is made unreadable (TLS files, keys, site
profiles) or, for the EVE file, not one it can append to; and an MQTT
plugin's topic prefix with this sensor's names must suit a broker.
``run`` and ``check-config`` run the same checks, so "configuration OK"
means that ``run`` starts. Each problem is one ``ConfigError`` naming the
key and the reason. Nothing is created, truncated or started here.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Mapping

from netgptd.capture.file_source import capture_file_problem
from netgptd.cloud.client import api_key_from
from netgptd.cloud.signing import read_key
from netgptd.config import FLOW_BYTES, ConfigError, SensorSettings, Settings
from netgptd.files import append_problem, create_problem, readable
from netgptd.intent import load_profile
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
        settings_of = plugin_settings(factory_of(name), values)
        check_extras(name, settings_of)
        check_plugin_files(name, settings_of)


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
    problem = create_problem(existing)
    if problem:
        verb = "cannot write in" if existing == path else "cannot create"
        raise ConfigError(f"[sensor] state_dir: {verb} {path}: {problem} ({existing})")


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


def appendable(setting: str, path: str) -> None:
    """A file the EVE plugin can append to: an existing one that is not a link, or one it can create
    (it makes no folders); '-' is stdout."""
    problem = None if path == "-" else append_problem(Path(path))
    if problem:
        raise ValueError(f"{setting}: {path}: {problem}")


def site_profile(setting: str, path: str) -> None:
    try:
        load_profile(path)
    except ValueError as exc:  # ProfileError: names the file and the entry
        raise ValueError(f"{setting}: {exc}") from None


def api_key_file(setting: str, path: str) -> None:
    api_key_from(api_key_file=path)  # its errors name api_key_file


def key_files(setting: str, requesters: Any) -> None:
    """Each requester's key file, read as the ask plugin reads it (its errors name requesters.NAME)."""
    for name, path in (requesters.items() if isinstance(requesters, Mapping) else ()):
        if isinstance(path, str):  # not a path: the plugin's constructor says so
            read_key(path, name)


# The files a plugin opens when it is made, as the plugin itself reads them (where it has a function for
# that), without making or truncating anything: (plugin, setting) -> check(setting, value), which raises a
# ValueError "setting: path: reason". An empty setting is not checked.
PLUGIN_FILES: dict[tuple[str, str], Callable[[str, Any], None]] = {
    **{(plugin, setting): readable for plugin in ("mqtt", "ask")
       for setting in ("password_file", "ca_file", "cert_file", "key_file")},
    ("ask", "api_key_file"): api_key_file,
    ("ask", "requesters"): key_files,
    ("ask", "intent_profile"): site_profile,
    ("intents", "profile"): site_profile,
    ("eve", "path"): appendable,
}  # fmt: skip


def check_plugin_files(name: str, settings: Mapping[str, Any]) -> None:
    """Each file plugin ``name`` opens when it is made can be (PLUGIN_FILES)."""
    for (plugin, setting), check in PLUGIN_FILES.items():
        value = settings.get(setting) if plugin == name else None
        if value:
            try:
                check(setting, value)
            except ValueError as exc:
                raise ConfigError(f"[plugins.{name}] {exc}") from None


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
