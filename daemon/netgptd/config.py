"""The daemon's configuration: a TOML file, checked at start with messages that name the key.

Every section maps onto a frozen dataclass below; a key the dataclass does
not have, a value of the wrong type or out of range is refused as
``netgptd.toml: [section] key: reason``. Plugins are configured by name
under ``[plugins.NAME]``; their settings are checked against the plugin's
own signature (:func:`netgptd.plugin_host.check_settings`). Pure: reading the
file is the caller's business (:func:`load_file` is the one helper that does).
"""

from __future__ import annotations

import dataclasses
import inspect
import socket
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from netgptd.mqtt_names import name_problem

DEFAULT_PATH = Path("/etc/netgptd/netgptd.toml")
SOURCE_KINDS = ("pcap", "live", "pyshark")
# Plugins a configuration without a [plugins] table gets: the rule detectors and metrics.
DEFAULT_PLUGINS: dict[str, dict[str, Any]] = {"rules": {}, "prometheus": {}}


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the key."""


def _between(low: float, high: float) -> Callable[[Any], str | None]:
    return lambda v: None if low <= v <= high else f"must be between {_number(low)} and {_number(high)}, not {v!r}"


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _text(longest: int) -> Callable[[str], str | None]:
    return lambda v: None if len(v) <= longest else f"must be at most {longest} characters, not {len(v):,}"


def _engine(value: str) -> str | None:
    from netgptd.hotpath import ENGINES
    from netgptd.hotpath.native import load_problem

    if value not in ENGINES:
        return f"must be one of {', '.join(ENGINES)}, not {value!r}"
    problem = load_problem() if value == "compiled" else None
    return f"the compiled hot path is not available: {problem}" if problem else None


def _source(value: str) -> str | None:
    kind, sep, target = value.partition(":")
    if not sep or kind not in SOURCE_KINDS or not target:
        return f"must be pcap:FILE, live:IFACE or pyshark:IFACE, not {value!r}"
    return None


@dataclass(frozen=True)
class SensorSettings:
    """Who this sensor is: names go into MQTT topics and prompts, state into ``state_dir``."""

    site: str = "default"
    sensor: str = field(default_factory=socket.gethostname)
    state_dir: str = "/var/lib/netgptd"
    location: str = ""
    role: str = ""


@dataclass(frozen=True)
class CaptureSettings:
    source: str = "live:any"
    bpf: str = ""
    replay_speed: float = 0.0  # pcap sources: 1 = real time, 0 = as fast as possible
    snaplen: int = 262144
    buffer_mb: int = 32
    queue: int = 65536  # packets buffered between the capture thread and the pipeline
    engine: str = "auto"  # parsing, decoding, flow table: compiled (Rust) where built, else python (netgptd.hotpath)


@dataclass(frozen=True)
class FlowSettings:
    max_flows: int = 262144
    community_id_seed: int = 0


@dataclass(frozen=True)
class ModelSettings:
    enabled: bool = True
    path: str = ""  # a model bundle folder; empty: the one shipped with netgptd
    max_batch: int = 256
    max_wait_ms: float = 20.0
    queue: int = 4096  # flows waiting for the model; beyond it they go out unclassified
    threads: int = 1  # onnxruntime intra-op threads
    memory_arena: bool = True  # onnxruntime's CPU arena: faster, but holds its peak (~400 MB at max_batch 256)
    alert_confidence: float = 0.9
    verdict_cache: int = 0
    port_blind: bool = False  # serve without the server port (no [PORT] tokens, no port prior)
    central_url: str = ""  # a Triton (KServe v2 HTTP) service for the flows the model is unsure of; "" = none
    central_model: str = ""  # the model asked for there; "" = this bundle's <name>-<version>
    central_below: float = 0.6  # a verdict with a confidence below this goes to the central service
    central_timeout_ms: float = 200.0  # per request; past it the local verdicts stand
    central_retry_s: float = 10.0  # after a failure, the central service is not asked for this long


@dataclass(frozen=True)
class StatsSettings:
    interval: float = 10.0  # seconds between stats events (EVE, metrics, systemd STATUS)
    stall_after: float = 60.0  # no pipeline progress for this long with work waiting: withhold the watchdog


@dataclass(frozen=True)
class FloodLogSettings:
    """Bounded flood-flow logging (netgptd.flood_log): past ``flows_per_window`` flows of one flood in a window,
    its flows go into one summary per window instead of a line each."""

    enabled: bool = True
    flows_per_window: int = 100  # flows of one flood written per window; the rest are summarised
    window_s: float = 10.0
    top: int = 5  # sources and destinations listed in a summary
    max_floods: int = 1000  # floods followed at once (the oldest goes, summarised, when full)


FLOW_BYTES = 1024  # memory one tracked flow takes, about (its record and the first packets buffered for the model)
MAX_FLOWS = 1 << 24  # 16 GiB of flows at FLOW_BYTES: far beyond one sensor
MAX_QUEUE = 1 << 20  # packets or flows waiting between two stages, at most

CHECKS: dict[str, dict[str, Callable[[Any], str | None]]] = {
    "sensor": {"site": name_problem, "sensor": name_problem, "location": _text(256), "role": _text(256)},
    "capture": {"source": _source, "replay_speed": _between(0, 1_000_000), "snaplen": _between(64, 262144),
                "buffer_mb": _between(1, 65536), "queue": _between(16, MAX_QUEUE),
                "engine": _engine},
    "flows": {"max_flows": _between(16, MAX_FLOWS), "community_id_seed": _between(0, 65535)},
    "model": {"max_batch": _between(1, 65536), "max_wait_ms": _between(0, 60000), "queue": _between(1, MAX_QUEUE),
              "threads": _between(1, 1024), "alert_confidence": _between(0, 1), "verdict_cache": _between(0, MAX_FLOWS),
              "central_below": _between(0, 1), "central_timeout_ms": _between(1, 60000),
              "central_retry_s": _between(0, 86400)},
    "stats": {"interval": _between(0.1, 86400), "stall_after": _between(1, 86400)},
    "flood_log": {"flows_per_window": _between(0, 10_000_000), "window_s": _between(1, 86400), "top": _between(1, 100),
                  "max_floods": _between(1, 100_000)},
}  # fmt: skip
SECTIONS: dict[str, type] = {
    "sensor": SensorSettings,
    "capture": CaptureSettings,
    "flows": FlowSettings,
    "model": ModelSettings,
    "stats": StatsSettings,
    "flood_log": FloodLogSettings,
}


@dataclass(frozen=True)
class Settings:
    sensor: SensorSettings = field(default_factory=SensorSettings)
    capture: CaptureSettings = field(default_factory=CaptureSettings)
    flows: FlowSettings = field(default_factory=FlowSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    stats: StatsSettings = field(default_factory=StatsSettings)
    flood_log: FloodLogSettings = field(default_factory=FloodLogSettings)
    plugins: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: dict(DEFAULT_PLUGINS))

    @property
    def source_kind(self) -> str:
        return self.capture.source.partition(":")[0]

    @property
    def source_target(self) -> str:
        return self.capture.source.partition(":")[2]


def fits(value: Any, annotation: Any) -> bool:
    """Whether a TOML value fits a simple annotation (str, int, float, bool, list, dict, unions of them).

    An integer is a fine float; a bool is neither an int nor a float. Anything
    else (no annotation, ``Any``) is left to whoever reads the value.
    """
    if annotation is Any or annotation is inspect.Parameter.empty:
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(fits(value, a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if origin is not None:
        annotation = origin
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, annotation) if isinstance(annotation, type) else True


def type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def _section(name: str, table: Any, origin: str) -> Any:
    cls = SECTIONS[name]
    if not isinstance(table, dict):
        raise ConfigError(f"{origin}: [{name}]: must be a table, not {type(table).__name__}")
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    for key, value in table.items():
        if key not in hints:
            raise ConfigError(f"{origin}: [{name}] {key}: unknown key (known: {', '.join(known)})")
        if not fits(value, hints[key]):
            raise ConfigError(f"{origin}: [{name}] {key}: expected {type_name(hints[key])}, got {type(value).__name__} {value!r}")
        problem = CHECKS.get(name, {}).get(key, lambda v: None)(value)
        if problem:
            raise ConfigError(f"{origin}: [{name}] {key}: {problem}")
    return cls(**table)


def _plugins(table: Any, origin: str) -> dict[str, dict[str, Any]]:
    if not isinstance(table, dict):
        raise ConfigError(f"{origin}: [plugins]: must be a table of plugin tables")
    enabled: dict[str, dict[str, Any]] = {}
    for name, settings in table.items():
        if not isinstance(settings, dict):
            raise ConfigError(f"{origin}: [plugins] {name}: must be a table ([plugins.{name}])")
        settings = dict(settings)
        switch = settings.pop("enabled", True)
        if not isinstance(switch, bool):
            raise ConfigError(f"{origin}: [plugins.{name}] enabled: expected bool, got {type(switch).__name__} {switch!r}")
        if switch:
            enabled[name] = settings
    return enabled


def parse(data: Mapping[str, Any], origin: str = "config") -> Settings:
    """Settings from a parsed TOML document (plugin settings are checked separately)."""
    sections: dict[str, Any] = {}
    for name, table in data.items():
        if name == "plugins":
            sections["plugins"] = _plugins(table, origin)
        elif name in SECTIONS:
            sections[name] = _section(name, table, origin)
        else:
            raise ConfigError(f"{origin}: [{name}]: unknown section (known: {', '.join([*SECTIONS, 'plugins'])})")
    return Settings(**sections)


def parse_text(text: str, origin: str = "config") -> Settings:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{origin}: not valid TOML: {exc}") from None
    except RecursionError:  # tomllib recurses per level of nested arrays and inline tables
        raise ConfigError(f"{origin}: not valid TOML: nested too deeply") from None
    return parse(data, origin)


def load_file(path: Path | None) -> Settings:
    """Settings from ``path``; without a path, the default file if present, else the built-in defaults."""
    if path is None:
        if not DEFAULT_PATH.exists():
            return Settings()
        path = DEFAULT_PATH
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    return parse_text(text, str(path))


def override(settings: Settings, **changes: Any) -> Settings:
    """``settings`` with command-line flags applied: ``section__key=value`` (None: not given)."""
    result = settings
    for dotted, value in changes.items():
        if value is None:
            continue
        section, key = dotted.split("__")
        table = dataclasses.asdict(getattr(result, section)) | {key: value}
        result = dataclasses.replace(result, **{section: _section(section, table, "command line")})
    return result


def with_plugin(settings: Settings, name: str, **values: Any) -> Settings:
    """``settings`` with plugin ``name`` enabled and ``values`` set (a flag such as --mqtt URL)."""
    plugins = {k: dict(v) for k, v in settings.plugins.items()}
    plugins[name] = plugins.get(name, {}) | values
    return dataclasses.replace(settings, plugins=plugins)
