"""The bruteforce rule on real lab traffic: real servers and clients on loopback, captured with dumpcap.

A slow FTP brute force (30 wrong logins, one per connection, against the
lab's pyftpdlib server) is run at full speed and its capture then stretched
to 59 s: every packet's time is moved apart from the first by the same
factor (the order and contents stay those of the real capture), the way a
guesser pacing itself at 30 logins a minute looks. The old rule (20 short
connections in 10 s) never fired on it; the new one fires once. Forty plain
``curl`` GETs to the lab's HTTP server in a few seconds (the old rule's false
alert) give none.
"""

from __future__ import annotations

import ftplib
import os
import shutil
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytest
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.ioloop import IOLoop
from pyftpdlib.servers import FTPServer

from netgptd.capture.file_source import PcapFileSource
from netgptd.eve import event_seconds
from netgptd.lab.safety import Supervisor, wait_until
from netgptd.lab.scenarios._servers import ftp_serving
from netgptd.lab.scenarios.http1 import _Pages, serve_http
from netgptd.replay import replay
from netgptd.rules import FlowRateRules
from netgptd.synth.pcap_writer import write_pcap

NET = "127.77.250"  # past the lab scenarios' 127.77.<index> networks
SERVER, GUESSER, BROWSER = f"{NET}.10", f"{NET}.20", f"{NET}.21"
LOGINS = 30
SPREAD_S = 59.0

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("dumpcap") is None or shutil.which("curl") is None,
                       reason="captures lo with dumpcap (root) and runs curl"),  # fmt: skip
    pytest.mark.timeout(120),
]


@contextmanager
def captured(path: Path) -> Iterator[None]:
    """dumpcap on lo for the lab network while the block runs."""
    with Supervisor() as supervisor:
        dumpcap = supervisor.start(["dumpcap", "-i", "lo", "-q", "-f", f"net {NET}.0/24", "-w", str(path)])
        assert wait_until(lambda: path.exists() and path.stat().st_size > 0, 10.0), "dumpcap did not start"
        time.sleep(0.3)  # its filter is attached once the file header is out; give it a moment
        try:
            yield
        finally:
            time.sleep(0.5)  # the last packets reach the file
            supervisor.stop(dumpcap)


def stretched(source: Path, target: Path, span_s: float) -> Path:
    """``source`` with its packets' times spread over ``span_s`` seconds from its first."""
    records = list(PcapFileSource(source).packets())
    first, last = records[0].ts_ns, records[-1].ts_ns
    factor = span_s * 1e9 / (last - first)
    with open(target, "wb") as stream:
        moved = [r._replace(ts_ns=first + round((r.ts_ns - first) * factor)) for r in records]
        write_pcap(stream, moved, nanosecond=True)
    return target


def rules_on(capture: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The flow records of a replay and the alerts the rules raise on them."""
    rules, flows, alerts = FlowRateRules(), [], []

    def sink(event: dict[str, Any]) -> None:
        if event["event_type"] == "flow":
            flows.append(event)
            alerts.extend(rules.observe(event))

    replay([capture], sink)
    return flows, alerts


def test_slow_ftp_brute_force_raises_one_alert(tmp_path: Path) -> None:
    authorizer = DummyAuthorizer()
    authorizer.add_user("netgptd-lab", os.urandom(16).hex(), str(tmp_path), perm="elr")
    handler = type("Handler", (FTPHandler,), {"authorizer": authorizer, "auth_failed_timeout": 0.01})
    server = FTPServer((SERVER, 2121), handler, ioloop=IOLoop())
    capture = tmp_path / "ftp.pcapng"
    with captured(capture), ftp_serving(server):
        for n in range(LOGINS):
            client = ftplib.FTP(timeout=5, source_address=(GUESSER, 0))
            client.connect(SERVER, 2121)
            with pytest.raises(ftplib.error_perm, match="^530"):
                client.login("admin", f"guess-{n}")
            client.close()
    slow = stretched(capture, tmp_path / "slow.pcap", SPREAD_S)
    flows, alerts = rules_on(slow)
    guesses = [f for f in flows if f["src_ip"] == GUESSER]
    assert len(guesses) == LOGINS and all(f["netgpt"]["logins"] == {"service": "ftp", "attempts": 1, "failed": 1}
                                          for f in guesses)  # fmt: skip
    starts = sorted(event_seconds(f["flow"]["start"]) for f in guesses)
    busiest = max(sum(1 for u in starts if t <= u < t + 10) for t in starts)
    assert starts[-1] - starts[0] > 55 and busiest < 10, "the old rule wanted 20 connections in 10 s"
    assert [(a["netgpt"]["detector"], a["src_ip"], a["dest_ip"], a["netgpt"]["logins"]) for a in alerts] == [
        ("bruteforce", GUESSER, SERVER, {"service": "ftp"})]  # fmt: skip
    assert alerts[0]["netgpt"]["flows"] == 10, "at the 10th failure"


def test_forty_plain_web_requests_raise_nothing(tmp_path: Path) -> None:
    server = serve_http(SERVER, 8080, _Pages)
    capture = tmp_path / "web.pcapng"
    try:
        with captured(capture):
            started = time.monotonic()
            for n in range(40):
                url = f"http://{SERVER}:8080/page{n}"
                subprocess.run(["curl", "-sf", "-o", "/dev/null", "--interface", BROWSER, url], check=True, timeout=10)
            took = time.monotonic() - started
    finally:
        server.shutdown()
        server.server_close()
    flows, alerts = rules_on(capture)
    web = [f for f in flows if f["src_ip"] == BROWSER and f["flow"]["state"] == "closed"]
    assert len(web) == 40 and took < 10, "40 short completed connections in 10 s: the old rule alerted"
    assert all("logins" not in f["netgpt"] for f in web)
    assert alerts == []
