"""``netgptd run`` and ``netgptd check-config``: the long-running sensor and its configuration check.

Everything that can be wrong before the pipeline starts (configuration,
plugins, model, and what the machine must have: ``netgptd.preflight``) is
checked first and reported in one line, exit status 2, without a traceback;
check-config runs the same checks. A failure while running is one line too,
exit status 1 (systemd restarts the service). Signals: SIGTERM
and SIGINT stop (flows flushed, plugins closed, the MQTT outbox flushed),
SIGHUP reloads configuration, plugins and model without dropping tracked
flows.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import traceback
from pathlib import Path
from typing import Any, Awaitable, Callable, Mapping

import structlog

from netgptd import __version__, logs
from netgptd.capture.dumpcap_source import CaptureStartError, DumpcapSource
from netgptd.capture.file_source import CaptureFileError, PcapFileSource
from netgptd.hotpath import engine
from netgptd.capture.pyshark_source import PysharkSource
from netgptd.capture.records import CaptureSource
from netgptd.config import DEFAULT_PATH, ConfigError, Settings, load_file, override, with_plugin
from netgptd.files import make_dirs
from netgptd.model.bundle import DEFAULT_BUNDLE, BundleError, load_bundle
from netgptd.model.central import CentralClassifier
from netgptd.model.session import Classifier, ModelSession
from netgptd.model.triton_serve import triton_name
from netgptd.flow_id_store import FlowIdStore
from netgptd.pipeline import Model, Pipeline
from netgptd.preflight import check_machine, check_mqtt_names, plugin_settings
from netgptd.plugin_host import PluginError, PluginHost, SensorContext, check_settings, factory_of, load_plugin
from netgptd.sdnotify import Notifier

log = structlog.get_logger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


def settings_from_args(args: argparse.Namespace) -> Settings:
    """The configuration file (or defaults) with the command-line flags on top."""
    settings = load_file(args.config)
    settings = override(
        settings,
        capture__source=args.source,
        capture__replay_speed=args.replay_speed,
        sensor__site=args.site,
        sensor__sensor=args.sensor,
        sensor__state_dir=args.state_dir,
        model__path=str(args.model) if args.model else None,
        model__enabled=False if args.no_model else None,
    )
    if args.mqtt:
        settings = with_plugin(settings, "mqtt", url=args.mqtt)
    if args.metrics:
        settings = with_plugin(settings, "prometheus", listen=args.metrics)
    if args.eve:
        settings = with_plugin(settings, "eve", path=args.eve)
    return settings


def check_plugins(settings: Settings) -> None:
    """Every enabled plugin is installed and its settings fit it (nothing is started)."""
    for name, values in settings.plugins.items():
        factory = factory_of(name)
        check_settings(name, factory, values)
        check_mqtt_names(name, plugin_settings(factory, values), settings.sensor)


def load_model(settings: Settings) -> Model | None:
    if not settings.model.enabled:
        return None
    path = Path(settings.model.path) if settings.model.path else DEFAULT_BUNDLE
    bundle = load_bundle(path)
    try:
        session = ModelSession(bundle, threads=settings.model.threads, memory_arena=settings.model.memory_arena)
    except ValueError as exc:
        raise BundleError(f"[model] {path}: {exc}") from None
    m = settings.model
    local = Classifier(session, batch=m.max_batch, cache_size=m.verdict_cache, port_blind=m.port_blind)
    classifier: Classifier | CentralClassifier = local
    if m.central_url:  # the flows this model is unsure of go to the central service
        try:
            classifier = CentralClassifier(local, m.central_url, m.central_model or triton_name(bundle),
                                           m.central_below, m.central_timeout_ms / 1000, m.central_retry_s)  # fmt: skip
        except ValueError as exc:
            raise BundleError(f"[model] {exc}") from None
    info = {"name": bundle.model_id, "version": str(bundle.manifest.get("version", "")), "provider": session.provider}
    return Model(classifier, bundle.tokenizer.flow_config(), info)


def open_source(settings: Settings) -> CaptureSource:
    """The capture source, started (a live one is capturing when this returns)."""
    kind, target, c = settings.source_kind, settings.source_target, settings.capture
    if kind == "pcap":
        return PcapFileSource(Path(target), engine(c.engine))  # checked by preflight.check_source
    source: DumpcapSource | PysharkSource
    if kind == "live":
        source = DumpcapSource(target, bpf=c.bpf or None, snaplen=c.snaplen, buffer_mb=c.buffer_mb)
    else:
        source = PysharkSource(target, bpf=c.bpf or None)
    source.start()
    return source


def state_dir(settings: Settings) -> Path:
    """The state folder, made (0750, as its missing parents) if it is not there."""
    path = Path(settings.sensor.state_dir)
    try:
        make_dirs(path)
    except OSError as exc:
        raise ConfigError(f"[sensor] state_dir: cannot create {path}: {exc.strerror or exc}") from None
    return path


def sensor_context(settings: Settings, model: Model | None, plugins: PluginHost,
                   serve_model: Callable[[Path], Awaitable[Mapping[str, str]]]) -> SensorContext:  # fmt: skip
    return SensorContext(site=settings.sensor.site, sensor=settings.sensor.sensor, state_dir=state_dir(settings),
                         location=settings.sensor.location, role=settings.sensor.role, version=__version__, model=dict(model.info) if model else {}, emit=plugins.emit,
                         serve_model=serve_model)  # fmt: skip


class Service:
    """The running sensor: the pipeline, its plugins, and what signals do to them."""

    def __init__(self, args: argparse.Namespace, settings: Settings, model: Model | None, plugins: PluginHost,
                 source: CaptureSource, notifier: Notifier) -> None:  # fmt: skip
        self.args = args
        self.settings = settings
        self.plugins = plugins
        self.notifier = notifier
        self.pipeline = Pipeline(settings, source, plugins, model, notifier,
                                 flow_ids=FlowIdStore(Path(settings.sensor.state_dir)))  # fmt: skip
        self.rolled_out: Path | None = None  # the bundle a rollout serves; reloads keep it over [model] path
        self.context = sensor_context(settings, model, plugins, self.serve_model)
        self._reloading: asyncio.Task[None] | None = None

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop, sig)
        loop.add_signal_handler(signal.SIGHUP, self._reload)
        await self.plugins.start(self.context)
        log.info("started", version=__version__, source=self.settings.capture.source, plugins=sorted(self.plugins.settings),
                 model=self.context.model or None)  # fmt: skip
        self.notifier.ready(f"capturing on {self.settings.capture.source}")
        try:
            await self.pipeline.run()
        finally:
            self.notifier.stopping()
            if self._reloading is not None:
                await asyncio.gather(self._reloading, return_exceptions=True)
            await self.plugins.aclose()
            stats = self.pipeline.stats()
            log.info("stopped", packets=stats["packets"], flows=stats["flows"], classified=stats["classified"],
                     unclassified=stats["unclassified"], alerts=stats["alerts"])  # fmt: skip

    def _stop(self, sig: signal.Signals) -> None:
        log.info("stopping", signal=sig.name)
        self.notifier.stopping()
        self.pipeline.stop()

    def _with_rollout(self, settings: Settings) -> Settings:
        return override(settings, model__path=str(self.rolled_out)) if self.rolled_out else settings

    async def serve_model(self, folder: Path) -> Mapping[str, str]:
        """A rollout: serve the bundle in ``folder`` from the next batch on; tracked and waiting flows stay.

        BundleError (the running model stays) when it cannot be loaded or the model is off here.
        """
        settings = override(self.settings, model__path=str(folder))
        if not settings.model.enabled:
            raise BundleError("[model] enabled = false on this sensor: a rolled-out model is not served")
        model = await asyncio.get_running_loop().run_in_executor(None, load_model, settings)
        assert model is not None  # enabled
        old = self.pipeline.model.info if self.pipeline.model else None
        self.pipeline.replace_model(model)
        self.rolled_out, self.settings = folder, settings
        log.info("model_rolled_out", model=model.info, previous=old, path=str(folder),
                 flows_tracked=self.pipeline.ingest.flows.active)  # fmt: skip
        return dict(model.info)

    def _reload(self) -> None:
        if self._reloading is not None and not self._reloading.done():
            log.warning("reload_ignored", reason="a reload is already running")
            return
        self._reloading = asyncio.get_running_loop().create_task(self.reload())

    async def reload(self) -> None:
        """Re-read configuration and model; swap what changed. A bad new configuration keeps the old one."""
        self.notifier.reloading()
        loop = asyncio.get_running_loop()
        old = self.settings
        try:
            new = self._with_rollout(settings_from_args(self.args))
            check_plugins(new)
            model = await loop.run_in_executor(None, load_model, new)
            changed = {n for n in {*old.plugins, *new.plugins} if old.plugins.get(n) != new.plugins.get(n)}
            fresh = {n: load_plugin(n, new.plugins[n]) for n in changed if n in new.plugins}
        except (ConfigError, PluginError, BundleError) as exc:
            log.error("reload_failed", error=str(exc), detail="the running configuration stays")
            self.notifier.ready("reload failed: running configuration kept")
            return
        self.plugins.reopen()  # logrotate's mv + HUP: files are written afresh
        if new.capture != old.capture:
            log.warning("reload_needs_restart", section="capture", detail="capture settings apply at the next start")
        await self.plugins.aclose(changed & set(old.plugins))
        for name, plugin in fresh.items():
            self.plugins.add(plugin, name)
            self.plugins.settings[name] = dict(new.plugins[name])
        self.pipeline.replace_model(model)
        self.pipeline.apply(new)
        self.settings = new
        self.context = sensor_context(new, model, self.plugins, self.serve_model)
        await self.plugins.start(self.context, names=set(fresh))
        log.info("reloaded", plugins_restarted=sorted(changed), model=model.info if model else None,
                 flows_tracked=self.pipeline.ingest.flows.active)  # fmt: skip
        self.notifier.ready("reloaded")


def _error(message: str) -> int:
    print(f"netgptd: error: {message}", file=sys.stderr)
    return EXIT_CONFIG


def cmd_run(args: argparse.Namespace) -> int:
    logs.configure(sys.stderr, args.log_level or "info")  # journald reads stderr too; stdout may carry EVE
    try:
        settings = settings_from_args(args)
        check_plugins(settings)
        check_machine(settings)
        state_dir(settings)
        model = load_model(settings)
        plugins = PluginHost(settings.plugins, host=settings.sensor.sensor, flood_log=settings.flood_log)
    except (ConfigError, PluginError, BundleError) as exc:
        return _error(str(exc))
    try:
        source = open_source(settings)
    except (CaptureFileError, CaptureStartError) as exc:
        return _error(str(exc))
    try:
        service = Service(args, settings, model, plugins, source, Notifier.from_env())
        asyncio.run(service.run())
    except Exception as exc:  # noqa: BLE001 -- whatever ends the pipeline: one line, and a status systemd restarts on
        reason = str(exc) if isinstance(exc, CaptureFileError) else failure(exc)
        log.error("failed", error=reason)
        print(f"netgptd: error: {reason}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        source.close()
    return EXIT_OK


def failure(exc: BaseException) -> str:
    """An unexpected exception as one line: its type, message and where it was raised (for a bug report)."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    kind = type(exc).__qualname__
    if type(exc).__module__ != "builtins":
        kind = f"{type(exc).__module__}.{kind}"  # struct.error, not a bare "error"
    message = str(exc).strip().replace("\n", " ")
    return f"{kind}: {message}{where}" if message else f"{kind}{where}"


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        settings = settings_from_args(args)
        check_plugins(settings)
        check_machine(settings)
        model = load_model(settings)
    except (ConfigError, PluginError, BundleError) as exc:
        return _error(str(exc))
    where = args.config or (DEFAULT_PATH if DEFAULT_PATH.exists() else "built-in defaults")
    described: dict[str, Any] = {"source": settings.capture.source, "plugins": sorted(settings.plugins),
                                 "model": model.info if model else None}  # fmt: skip
    print(f"netgptd: {where}: configuration OK ({', '.join(f'{k} {v}' for k, v in described.items())})")
    return EXIT_OK


def add_parsers(sub: Any) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, metavar="FILE",
                        help=f"TOML configuration (default {DEFAULT_PATH} if it exists, else built-in defaults)")
    common.add_argument("--source", metavar="pcap:FILE|live:IFACE|pyshark:IFACE",
                        help="capture source: a file, a live interface through dumpcap, or through pyshark")
    common.add_argument("--replay-speed", type=float, metavar="X",
                        help="for pcap sources: 1 = real time, 0 = as fast as possible")
    common.add_argument("--mqtt", metavar="URL", help="publish to this broker (mqtt://host:port or mqtts://...)")
    common.add_argument("--metrics", metavar="HOST:PORT", help="serve Prometheus metrics here (default 127.0.0.1:9400)")
    common.add_argument("--eve", metavar="PATH|-", help="append EVE JSON lines to PATH, or '-' for stdout")
    common.add_argument("--site", help="site name (MQTT topics, prompts)")
    common.add_argument("--sensor", help="sensor name (default: host name)")
    common.add_argument("--state-dir", metavar="DIR", help="where state lives (outbox, history)")
    common.add_argument("--model", type=Path, metavar="DIR", help="model bundle (default: the shipped one)")
    common.add_argument("--no-model", action="store_true", help="no classification (flow records and rules only)")
    p = sub.add_parser("run", parents=[common], help="run the sensor: capture, classify, publish (the systemd service)",
                       description="Capture, track flows, classify them with NetGPT, publish to the enabled plugins "
                                   "(EVE, MQTT, Prometheus, rules). SIGHUP reloads, SIGTERM flushes and stops. "
                                   "A pcap source ends the run when the file ends.")  # fmt: skip
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("check-config", parents=[common], help="validate the configuration (and model) without starting",
                       description="Read the configuration with the same flags as 'run', check every key, "
                                   "every plugin's settings, the model bundle and what 'run' needs of this "
                                   "machine (capture file or interface and tools, state directory, memory, "
                                   "the edge LLM's extra); start nothing.")  # fmt: skip
    p.set_defaults(func=cmd_check_config)
