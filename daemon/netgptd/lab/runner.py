"""Runs scenarios: capture ``lo`` with dumpcap, run, write the capture and labels."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import structlog

from netgptd.lab.safety import MAX_DURATION_S, LabError, Supervisor, bounded, wait_until
from netgptd.decode.packet import PROTO_TCP, PROTO_UDP
from netgptd.lab.scenario import ADDRESS_PLAN, REGISTRY, FlowLabel, LabContext, LabelRule, Scenario
from netgptd.lab.scenarios import UNAVAILABLE, load_all
from netgptd.replay import replay

log = structlog.get_logger(__name__)

CAPTURE_START_TIMEOUT_S = 10.0
CAPTURE_TAIL_S = 0.5  # let the last packets reach the capture file


@dataclass(frozen=True)
class LabResult:
    scenario: str
    capture: Path
    labels: Path
    flows: int
    seconds: float

    @property
    def flows_per_minute(self) -> float:
        return self.flows * 60.0 / self.seconds if self.seconds else 0.0


def scenarios() -> dict[str, Scenario]:
    load_all()
    return dict(sorted(REGISTRY.items()))


def missing_requirements(s: Scenario) -> list[str]:
    programs = [p for p in s.requires if shutil.which(p) is None]
    modules = [m for m in s.python if importlib.util.find_spec(m) is None]
    return programs + [f"python:{m}" for m in modules]


def select(names: list[str]) -> list[Scenario]:
    """Scenario names, or the groups ``all``, ``benign`` and ``attack``."""
    known = scenarios()
    chosen: dict[str, Scenario] = {}
    for name in names:
        if name in ("all", "benign", "attack"):
            chosen.update({k: s for k, s in known.items() if name == "all" or s.kind == name})
        elif name in known:
            chosen[name] = known[name]
        elif name in UNAVAILABLE:
            raise LabError(f"scenario {name!r} needs {UNAVAILABLE[name]}")
        else:
            raise LabError(f"unknown scenario {name!r}; 'netgptd lab list' shows them")
    return list(chosen.values())


def run_lab(names: list[str], out_dir: Path, duration: float) -> list[LabResult]:
    bounded(duration, MAX_DURATION_S, "--duration")
    chosen = select(names)
    if os.geteuid() != 0:
        raise LabError("the lab captures on lo with dumpcap and needs root (CAP_NET_RAW): run it as root")
    missing = {s.name: missing_requirements(s) for s in chosen}
    missing = {name: m for name, m in missing.items() if m}
    if missing:
        detail = "; ".join(f"{name} needs {', '.join(m)}" for name, m in missing.items())
        raise LabError(f"missing software: {detail} (run ./setup.sh)")
    out_dir.mkdir(parents=True, exist_ok=True)
    index = {name: i for i, name in enumerate(scenarios(), start=1)}
    # Lab servers write to connections their clients dropped (scanners, floods,
    # slow attacks): that must be EPIPE, not a SIGPIPE ending the whole run with
    # its tools and routes left behind (the CLI restores SIGPIPE's default for pipes).
    sigpipe = signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    try:
        return [_run_one(s, index[s.name], out_dir, duration) for s in chosen]
    finally:
        signal.signal(signal.SIGPIPE, sigpipe)


def _run_one(s: Scenario, index: int, out_dir: Path, duration: float) -> LabResult:
    capture = out_dir / f"{s.name}.pcapng"
    labels_path = out_dir / f"{s.name}.labels.jsonl"
    capture.unlink(missing_ok=True)
    with Supervisor() as supervisor, tempfile.TemporaryDirectory(prefix=f"netgptd-lab-{s.name}-") as work:
        ctx = LabContext(s.name, index, duration, supervisor, Path(work))
        dumpcap = supervisor.start(["dumpcap", "-i", "lo", "-q", "-f", f"net {ctx.network}", "-w", str(capture)])
        if not wait_until(lambda: capture.exists() and capture.stat().st_size > 0, CAPTURE_START_TIMEOUT_S):
            raise LabError(f"{s.name}: dumpcap did not start capturing on lo")
        log.info("lab_scenario_start", scenario=s.name, network=ctx.network, duration=duration)
        started = time.monotonic()
        ctx.started = started
        try:
            s.run(ctx)
        finally:
            time.sleep(CAPTURE_TAIL_S)
            supervisor.stop(dumpcap)
        seconds = time.monotonic() - started
    labels = _unique(ctx.labels + _resolve_rules(ctx.rules, capture))
    with open(labels_path, "w", encoding="utf-8") as f:
        for label in labels:
            f.write(json.dumps(label.to_json(s.name)) + "\n")
    log.info("lab_scenario_done", scenario=s.name, flows=len(labels), seconds=round(seconds, 2))
    return LabResult(s.name, capture, labels_path, len(labels), seconds)


def _resolve_rules(rules: list[LabelRule], capture: Path) -> list[FlowLabel]:
    """Flows of the capture that a LabelRule claims (addresses and ports only)."""
    if not rules:
        return []
    found: list[FlowLabel] = []

    def sink(event: dict) -> None:
        if event["event_type"] != "flow" or event["proto"] not in ("TCP", "UDP"):
            return
        proto = PROTO_TCP if event["proto"] == "TCP" else PROTO_UDP
        for rule in rules:
            for (cip, cport), (sip, sport) in (
                ((event["src_ip"], event["src_port"]), (event["dest_ip"], event["dest_port"])),
                ((event["dest_ip"], event["dest_port"]), (event["src_ip"], event["src_port"])),
            ):  # a scan's flow may be oriented either way round by its first packet
                if rule.matches(proto, cip, sip, sport):
                    found.append(FlowLabel(proto, cip, cport, sip, sport, rule.app, rule.attack, ADDRESS_PLAN))
                    return

    replay([capture], sink)
    return found


def _unique(labels: list[FlowLabel]) -> list[FlowLabel]:
    seen: dict[tuple, FlowLabel] = {}
    for label in labels:
        seen.setdefault((label.proto, label.client_ip, label.client_port, label.server_ip, label.server_port), label)
    return list(seen.values())
