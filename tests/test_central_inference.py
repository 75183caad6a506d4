"""Central inference: unsure flows go to a real Triton (PyTriton, on the CPU); local verdicts stand without it.

The service is ``netgptd serve-central`` with ``.venv-triton``'s Python
(setup.sh makes it: PyTriton ships the Triton server) serving the shipped
bundle, with a long batching window so that two sensors' requests meet.
Two ``netgptd run`` sensors replay the mining capture at once with
``[model] central_url`` and ``central_below = 1.0`` (every flow is
"unsure"): their flows carry the central model's verdicts, the same
labels as a sensor classifying alone (the same bundle), and Triton's own
metrics show requests merged into fewer executions. A sensor whose central
service is not there, or frozen (SIGSTOP: requests time out), finishes the
capture with local verdicts, in about the time it takes alone, logging
the service away once.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from broker import free_port
from fleet import stop_group
from netgptd.model.bundle import DEFAULT_BUNDLE, load_bundle
from netgptd.model.triton_serve import triton_name
from test_daemon import MINING, Daemon

pytestmark = [pytest.mark.corpus, pytest.mark.slow, pytest.mark.timeout(240)]

REPO = Path(__file__).resolve().parent.parent
TRITON_PYTHON = Path(os.environ.get("NETGPTD_TRITON_PYTHON", REPO / ".venv-triton" / "bin" / "python"))
MODEL = triton_name(load_bundle(DEFAULT_BUNDLE))
CENTRAL = f"{MODEL}@central"


class Triton:
    def __init__(self, process: subprocess.Popen[bytes], http: int, metrics: int) -> None:
        self.process, self.url, self.metrics = process, f"http://127.0.0.1:{http}", metrics

    def counter(self, name: str) -> float:
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics}/metrics", timeout=5).read().decode()
        return sum(float(m) for m in re.findall(rf"^{name}{{[^}}]*}} (\S+)$", text, re.M))


@contextlib.contextmanager
def serve_central(log_path: Path, queue_delay_us: int = 100000, max_batch: int = 1024) -> Iterator[Triton]:
    """``netgptd serve-central`` with the shipped bundle on free ports, its model ready (the server says ready
    before it has loaded it); stopped (resumed first) after."""
    http, grpc, metrics = free_port(), free_port(), free_port()
    log = open(log_path, "wb")
    process = subprocess.Popen([sys.executable, "-m", "netgptd", "serve-central", "--python", str(TRITON_PYTHON),
                                "--model", str(DEFAULT_BUNDLE), "--http-port", str(http), "--grpc-port", str(grpc),
                                "--metrics-port", str(metrics), "--queue-delay-us", str(queue_delay_us),
                                "--max-batch", str(max_batch)],
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    server = Triton(process, http, metrics)
    try:
        deadline = time.monotonic() + 90
        while True:
            with contextlib.suppress(OSError):
                if urllib.request.urlopen(f"{server.url}/v2/models/{MODEL}/ready", timeout=2).status == 200:
                    break
            assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.5)
        yield server
    finally:
        stop_group(process, resume=True)  # it may be stopped (SIGSTOP)
        log.close()


@pytest.fixture
def triton(tmp_path: Path) -> Iterator[Triton]:
    if not TRITON_PYTHON.exists():
        pytest.skip(f"no {TRITON_PYTHON} (setup.sh test makes .venv-triton with PyTriton)")
    with serve_central(tmp_path / "triton.log") as server:
        yield server


def sensor(folder: Path, capture: Path, central_url: str, timeout_ms: int = 10000, extra: str = "") -> Daemon:
    """``extra``: more of the configuration file (after ``[model]``)."""
    folder.mkdir(parents=True)
    config = folder / "netgptd.toml"
    central = (f'central_url = "{central_url}"\ncentral_below = 1.0\ncentral_timeout_ms = {timeout_ms}\n'
               f"central_retry_s = 60\n") if central_url else ""  # fmt: skip
    config.write_text(f"[model]\nmax_batch = 32\n{central}{extra}", encoding="utf-8")  # requests small enough to merge
    return Daemon(folder, "--config", str(config), "--source", f"pcap:{capture}", "--replay-speed", "0")


def finished(daemon: Daemon) -> float:
    """Wall seconds from start to exit."""
    started = time.monotonic()
    assert daemon.wait(180) == 0, daemon.log.read_text()[-3000:]
    return time.monotonic() - started


def central_stats(daemon: Daemon) -> dict[str, Any]:
    """The ``central`` section of the sensor's last stats event."""
    return daemon.events("stats")[-1]["netgpt"]["stats"]["central"]


def labels(daemon: Daemon) -> list[tuple[object, ...]]:
    """Each classified flow (by its 5-tuple and start; flow ids differ between runs) and its application."""
    return sorted((f["timestamp"], f["src_ip"], f.get("src_port", 0), f["dest_ip"], f.get("dest_port", 0), f["proto"],
                   f["netgpt"]["app"]) for f in daemon.events("flow") if f["netgpt"].get("model"))  # fmt: skip


def test_unsure_flows_get_the_central_verdict_in_merged_batches(corpus: Path, triton: Triton, tmp_path: Path) -> None:
    capture = corpus / MINING
    alone = sensor(tmp_path / "alone", capture, "")
    assert finished(alone) > 0
    pair = [sensor(tmp_path / name, capture, triton.url) for name in ("a", "b")]
    for daemon in pair:
        finished(daemon)
    requests, executions = triton.counter("nv_inference_request_success"), triton.counter("nv_inference_exec_count")
    for daemon in pair:
        models = {f["netgpt"]["model"] for f in daemon.events("flow") if f["netgpt"].get("model")}
        assert models == {CENTRAL}, models
        assert labels(daemon) == labels(alone), "the same bundle centrally: the same applications"
        central = central_stats(daemon)
        assert central["sent"] == central["answered"] > 0 and central["failed"] == 0, central
        latency = central["latency_ms"]
        assert latency["of"] == central["requests"] > 0 and 0 < latency["p50"] <= latency["p99"] < 10000, central
    assert requests > 0 and executions < requests, (requests, executions)


def test_local_verdicts_stand_when_the_service_is_away_or_frozen(corpus: Path, triton: Triton, tmp_path: Path) -> None:
    capture = corpus / MINING
    alone = sensor(tmp_path / "alone", capture, "")
    alone_s = finished(alone)
    os.killpg(triton.process.pid, signal.SIGSTOP)  # accepts connections, answers nothing: every request times out
    for name, url in (("away", f"http://127.0.0.1:{free_port()}"), ("frozen", triton.url)):
        daemon = sensor(tmp_path / name, capture, url, timeout_ms=500)
        took = finished(daemon)
        models = {f["netgpt"]["model"] for f in daemon.events("flow") if f["netgpt"].get("model")}
        assert models == {"netgpt-small@0.1.0"}, (name, models)
        assert labels(daemon) == labels(alone), name
        assert [e["event"] for e in daemon.entries()].count("central_inference_away") == 1, name
        assert took < alone_s + 5, f"{name}: {took:.1f} s against {alone_s:.1f} s alone"
        central = central_stats(daemon)
        assert central["answered"] == 0 and central["failed"] > 0 and central["skipped"] > 0, (name, central)
        assert central["requests"] == central["latency_ms"]["of"] == 1, (name, central)  # then none for 60 s
        if name == "frozen":  # the one request waited for its timeout
            assert 450 <= central["latency_ms"]["p99"] < 5000, central
