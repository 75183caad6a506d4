"""The live pipeline: capture → decode → flows → batcher → model (executor) → events → plugins.

One asyncio loop owns it. The capture source runs in the pump's thread;
decoding and the flow table run in the loop, a chunk of packets at a time;
inference runs in a one-thread executor, so capture never waits on the
model (onnxruntime releases the GIL). Flows wait for the model in a
bounded batcher; what does not fit goes out unclassified and is counted.
An ended flow's record waits for its verdict only while that verdict is
queued or being computed, so records are never held without limit either.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Callable

import structlog

from netgptd.batcher import Batcher
from netgptd.capture.pump import CapturePump
from netgptd.capture.records import CaptureSource
from netgptd.classify import VerdictSource, classifiable, model_alert
from netgptd.config import Settings
from netgptd.eve import flow_event, stats_event
from netgptd.flow.config import FlowConfig
from netgptd.flow.table import Flow
from netgptd.ingest import Ingest
from netgptd.flow_id_store import FlowIdStore
from netgptd.flow_ids import first_flow_id
from netgptd.model.central import CentralClassifier
from netgptd.plugin_host import PluginHost
from netgptd.sdnotify import Notifier

log = structlog.get_logger(__name__)

CHUNK = 512  # packets decoded between two turns of the loop
EMIT_BATCH = 512  # flow events handed to the plugins together
SHUTDOWN_CLASSIFY_S = 10.0  # at stop, how long flows may still wait for the model


@dataclass
class Model:
    """A loaded model as the pipeline uses it."""

    classifier: VerdictSource
    flow_config: FlowConfig
    info: dict[str, str]  # name, version, provider


class Pipeline:
    def __init__(self, settings: Settings, source: CaptureSource, plugins: PluginHost, model: Model | None,
                 notifier: Notifier, clock: Callable[[], float] = time.monotonic,
                 flow_ids: FlowIdStore | None = None) -> None:  # fmt: skip
        self.settings = settings
        self.source = source
        self.plugins = plugins
        self.model = model
        self.notifier = notifier
        self.clock = clock
        flow_config = model.flow_config if model else FlowConfig()
        # Unique across restarts and sensors: above the clock, and above what an earlier run reserved.
        self.flow_ids = flow_ids
        self.first_id = first_flow_id(settings.sensor.sensor, time.time(), flow_ids.load() if flow_ids else 0)
        self.ingest = Ingest(_with_flow_settings(flow_config, settings), self.first_id, settings.capture.engine)
        self.batcher = _batcher(settings)
        self.ingest.flows.on_buffer_full = self._buffer_full
        self.waiting: dict[int, Flow] = {}  # ended flows whose verdict is on its way, in end order
        self.failed: dict[int, str] = {}  # live flows whose early classification failed, and why (not retried)
        self.unclassified: Counter[str] = Counter()
        self.classified = 0
        self.model_alerts = 0
        self.watchdog = Counter({"pings": 0, "stalls": 0})
        self.started = clock()
        self.progress_at = clock()
        self._work = asyncio.Event()
        self._stop = asyncio.Event()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="model")
        self._inferring = False
        self.pump: CapturePump | None = None

    # -- flows to the model and out ---------------------------------------------

    def _buffer_full(self, flow: Flow) -> None:
        """Early classification: the flow has the packets the model reads (a full queue: retried at its end)."""
        if self.model is not None and classifiable(flow) and self.batcher.offer(flow, self.clock()):
            self._work.set()

    def _ended(self, flows: list[Flow]) -> None:
        ready: list[Flow] = []  # flows that go out now, together
        for flow in flows:
            if flow.verdict is not None:
                ready.append(flow)
            elif flow.flow_id in self.failed:  # counted once, at its end
                self.unclassified[self.failed.pop(flow.flow_id)] += 1
                ready.append(flow)
            elif self.batcher.pending(flow):  # also after a reload turned the model off: its batch says so
                self.waiting[flow.flow_id] = flow
            elif self.model is None:
                ready.append(flow)
            elif not classifiable(flow):
                self.unclassified["no_payload"] += 1
                ready.append(flow)
            elif self.batcher.offer(flow, self.clock()):
                self.waiting[flow.flow_id] = flow
                self._work.set()
            else:
                self.unclassified["overload"] += 1
                ready.append(flow)
        self._emit_flows(ready)

    def _emit_flows(self, flows: list[Flow]) -> None:
        """Hand ended flows' events to the plugins, ``EMIT_BATCH`` at a time (a flush's many: memory stays put)."""
        for start in range(0, len(flows), EMIT_BATCH):
            self.plugins.emit_batch([flow_event(flow) for flow in flows[start : start + EMIT_BATCH]])

    def _release_waiting(self) -> None:
        """Emit the ended flows whose verdict has come (or will not come)."""
        done = [fid for fid, flow in self.waiting.items() if not self.batcher.pending(flow)]
        self._emit_flows([self.waiting.pop(fid) for fid in done])

    async def _classify_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            delay = self.batcher.due_in(self.clock())
            if delay is None or delay > 0:
                self._work.clear()
                try:
                    await asyncio.wait_for(self._work.wait(), delay)
                except TimeoutError:
                    pass
                continue
            await self._classify(loop, self.batcher.take())

    async def _classify(self, loop: asyncio.AbstractEventLoop, batch: list[Flow]) -> None:
        model = self.model
        verdicts: list[dict[str, Any] | None] = [None] * len(batch)
        failure = "no_model"  # a reload turned the model off while these flows waited
        if model is not None:
            started = time.perf_counter()
            self._inferring = True
            try:
                verdicts = await loop.run_in_executor(self._executor, model.classifier.verdicts, batch)
            except Exception as exc:  # noqa: BLE001 -- a failed batch goes out unclassified, the pipeline goes on
                log.error("inference_failed", flows=len(batch), error=f"{type(exc).__name__}: {exc}")
                failure = "error"
            finally:
                self._inferring = False
            self.plugins.batch(len(batch), time.perf_counter() - started)
        self.progress_at = self.clock()
        for flow, verdict in zip(batch, verdicts):
            if verdict is None:
                if flow.flow_id in self.waiting:
                    self.unclassified[failure] += 1
                else:  # still live: counted when it ends
                    self.failed[flow.flow_id] = failure
                continue
            flow.verdict = verdict
            self.classified += 1
            alert = model_alert(flow, verdict, self.settings.model.alert_confidence)
            if alert is not None:
                self.model_alerts += 1
                self.plugins.emit(alert)
        self.batcher.done(batch)
        self._release_waiting()

    # -- packets in -------------------------------------------------------------

    async def _ingest_loop(self) -> None:
        assert self.pump is not None
        ingest = self.ingest
        while (chunk := await self.pump.next_chunk(CHUNK)) is not None:
            ingest.feed_batch(chunk)
            if ingest.flows.ended:
                self._ended(ingest.pop_ended())
            self.progress_at = self.clock()
            await asyncio.sleep(0)  # let the batcher, timers and signals run between chunks

    async def _clock_loop(self) -> None:
        """A live capture's flows time out on the wall clock, also while no packet comes."""
        while True:
            await asyncio.sleep(1.0)
            now_ns = time.time_ns()
            if now_ns - self.ingest.flows.now_ns > 1_000_000_000:
                self.ingest.flows.advance(now_ns)
                if self.ingest.flows.ended:
                    self._ended(self.ingest.pop_ended())

    # -- health -------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        stats = self.ingest.stats()
        drops = self.source.stats()
        stats |= {
            "uptime": round(self.clock() - self.started, 3),
            "capture_drops": {k: v for k, v in (("kernel", drops.dropped_kernel), ("interface", drops.dropped_interface))
                              if v is not None},
            "classified": self.classified,
            "unclassified": dict(self.unclassified),
            "alerts": self.plugins.emitted["alert"],
            "model_alerts": self.model_alerts,
            "queues": {"capture": self.pump.depth if self.pump else 0, "classify": len(self.batcher)},
            "queue_limits": {"capture": self.pump.capacity if self.pump else 0, "classify": self.batcher.capacity},
            "watchdog": dict(self.watchdog),
            "plugin_errors": dict(self.plugins.errors),
            "plugins": self.plugins.status(),
        }  # fmt: skip
        if self.model is not None:
            stats["model"] = dict(self.model.info)
            if isinstance(self.model.classifier, CentralClassifier):
                stats["central"] = self.model.classifier.stats()
        return stats

    def _emit_stats(self) -> dict[str, Any]:
        if self.flow_ids is not None:  # at start, every stats interval and at the end
            self.flow_ids.reserve(self.first_id + self.ingest.flows.flows_created)
        stats = self.stats()
        self.plugins.emit(stats_event(time.time_ns(), stats))
        return stats

    async def _stats_loop(self) -> None:
        self._emit_stats()  # at once, so metrics have every series from the first scrape
        while True:
            await asyncio.sleep(self.settings.stats.interval)
            stats = self._emit_stats()
            problem = self.unhealthy()
            self.notifier.status(
                f"{stats['packets']:,} packets, {stats['active_flows']:,} active flows, "
                f"{stats['classified']:,} classified, {sum(self.unclassified.values()):,} unclassified, "
                f"{stats['alerts']:,} alerts" + (f"; UNHEALTHY: {problem}" if problem else "")
            )

    def stalled(self) -> bool:
        """Work waits (packets or flows) and nothing moved for ``stall_after`` seconds."""
        busy = (self.pump is not None and self.pump.depth > 0) or len(self.batcher) > 0 or self._inferring
        return busy and self.clock() - self.progress_at > self.settings.stats.stall_after

    def unhealthy(self) -> str | None:
        """Why systemd must not be told that all is well: the pipeline stalled, or an output died."""
        if self.stalled():
            return f"pipeline stalled for {self.clock() - self.progress_at:.0f} s"
        dead = self.plugins.dead()
        return "; ".join(f"plugin {name}: {why}" for name, why in sorted(dead.items())) or None

    async def _watchdog_loop(self, interval: float) -> None:
        """Ping systemd's watchdog only while the pipeline makes progress and every output works.

        Withheld pings make systemd restart the service; the reason is logged
        and shown in STATUS once each time it changes.
        """
        reported: str | None = None
        while True:
            await asyncio.sleep(interval)
            problem = self.unhealthy()
            if problem != reported:
                if problem:
                    log.error("watchdog_withheld", reason=problem)
                    self.notifier.status(f"UNHEALTHY: {problem}")
                else:
                    log.info("watchdog_resumed")
                reported = problem
            if problem:
                self.watchdog["stalls"] += 1
                continue
            self.notifier.watchdog()
            self.watchdog["pings"] += 1

    # -- lifecycle ----------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    def replace_model(self, model: Model | None) -> None:
        """Serve later batches with ``model`` (a reload); tracked flows stay, new ones buffer what it reads."""
        self.model = model
        if model is not None:
            fc = model.flow_config
            self.ingest.flows.set_buffers(fc.first_packets, fc.first_packet_bytes, fc.buffer_payload_only)

    def apply(self, settings: Settings) -> None:
        """Settings that change on reload without a restart (model queue sizes, intervals, thresholds)."""
        self.settings = settings
        self.batcher.max_batch = settings.model.max_batch
        self.batcher.max_wait_s = settings.model.max_wait_ms / 1000
        self.batcher.capacity = settings.model.queue
        self.plugins.flood_log.settings = settings.flood_log

    async def run(self) -> None:
        """Run until the source ends or ``stop()``; then flush every flow and the plugins."""
        loop = asyncio.get_running_loop()
        self.pump = CapturePump(self.source, loop, capacity=self.settings.capture.queue, speed=self.settings.capture.replay_speed
                                if self.settings.source_kind == "pcap" else 0.0)  # fmt: skip
        self.pump.start()
        ingest = asyncio.create_task(self._ingest_loop(), name="ingest")
        helpers = [asyncio.create_task(self._classify_loop(), name="classify"),
                   asyncio.create_task(self._stats_loop(), name="stats")]  # fmt: skip
        if self.source.live:
            helpers.append(asyncio.create_task(self._clock_loop(), name="clock"))
        interval = self.notifier.watchdog_interval()
        if interval:
            helpers.append(asyncio.create_task(self._watchdog_loop(interval), name="watchdog"))
        stop = asyncio.create_task(self._stop.wait(), name="stop")
        try:
            await asyncio.wait({ingest, stop, *helpers}, return_when=asyncio.FIRST_COMPLETED)
            if stop.done():
                self.pump.stop()
                await ingest  # what was captured before the stop is still processed
            _raise_failure(ingest, *helpers)
            if self.pump.error is not None:
                raise self.pump.error
            await self._drain(helpers)
        finally:
            for task in (*helpers, stop, ingest):
                task.cancel()
            await asyncio.gather(*helpers, stop, ingest, return_exceptions=True)
            self.pump.stop()
            self._executor.shutdown(wait=False, cancel_futures=True)
        self._emit_stats()

    async def _drain(self, helpers: list[asyncio.Task[None]]) -> None:
        """End every tracked flow and give the model a last chance at them (bounded at stop)."""
        self._ended(self.ingest.flush())
        deadline = self.clock() + (SHUTDOWN_CLASSIFY_S if self._stop.is_set() else float("inf"))
        while self.waiting and self.clock() < deadline:
            _raise_failure(*helpers)  # a dead classify loop would leave them waiting for ever
            await asyncio.sleep(0.01)
        if self.waiting:
            self.unclassified["shutdown"] += len(self.waiting)
            self._emit_flows(list(self.waiting.values()))
            self.waiting.clear()
        self.plugins.flush_flood_log()


def _raise_failure(*tasks: asyncio.Task[None]) -> None:
    """Raise what ended a task: the pipeline's tasks run until it stops, and one that fails ends it
    (the caller reports it and exits non-zero) instead of leaving the others to run on without it."""
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]


def _with_flow_settings(base: FlowConfig, settings: Settings) -> FlowConfig:
    return replace(base, max_flows=settings.flows.max_flows, community_id_seed=settings.flows.community_id_seed)


def _batcher(settings: Settings) -> Batcher:
    m = settings.model
    return Batcher(max_batch=m.max_batch, max_wait_s=m.max_wait_ms / 1000, capacity=m.queue)
