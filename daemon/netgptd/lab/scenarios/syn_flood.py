"""TCP SYN flood: hping3 sends SYNs from the attacker's address to the lab
HTTP server's port, the source port one up per packet from a pinned base,
while a benign client fetches pages from the same server. hping3 reports
how many packets it sent, which gives every flood flow exactly."""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess

from netgptd.decode.packet import PROTO_TCP
from netgptd.lab.safety import STOP_GRACE_S, LabError
from netgptd.lab.scenario import LabContext, scenario
from netgptd.lab.scenarios._attack_targets import (ATTACKER, CLIENT, VICTIM, Request, fetch,
                                                   serve_logged_http, stop_servers)
from netgptd.lab.scenarios._servers import well_known_port
from netgptd.lab.scenarios.http1 import PAGES, _Pages

BASE_PORT = 1024  # the flood's source ports: BASE_PORT, BASE_PORT + 1, ... (at most up to 65535 per round)
BENIGN_RATE = 20  # page requests per second from the benign client
TRANSMITTED = re.compile(r"(\d+) packets transmitted")


def _stop_flood(ctx: LabContext, flood: subprocess.Popen) -> int:
    """End hping3 (SIGINT makes it print its statistics) and return how many
    packets it sent."""
    if flood.poll() is None:
        os.killpg(flood.pid, signal.SIGINT)
    try:
        output, _ = flood.communicate(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        ctx.supervisor.stop(flood)
        raise LabError(f"{ctx.scenario}: hping3 did not stop on SIGINT") from None
    found = TRANSMITTED.search(output.decode(errors="replace"))
    if found is None:
        raise LabError(f"{ctx.scenario}: hping3 said nothing of the packets it sent")
    return int(found.group(1))


@scenario("syn-flood", "attack", "TCP SYN flood (hping3) against the lab HTTP server, with benign page fetches",
          requires=("hping3",))  # fmt: skip
def syn_flood(ctx: LabContext) -> None:
    victim_ip, client_ip, attacker_ip = ctx.host(VICTIM), ctx.host(CLIENT), ctx.host(ATTACKER)
    port = well_known_port(ctx, victim_ip, 80)
    server = serve_logged_http(victim_ip, port, _Pages)
    pages = [Request("GET", path) for path in PAGES]
    interval_us = math.ceil(1_000_000 / ctx.max_rate)
    fetched = 0
    try:
        ctx.wait_listening(victim_ip, port)
        while ctx.running():  # a round per at most 65535 - BASE_PORT SYNs
            count = max(1, min(65536 - BASE_PORT, int(ctx.remaining * ctx.max_rate)))
            flood = ctx.supervisor.start(["hping3", "-q", "-S", "-p", str(port), "-s", str(BASE_PORT), "-c", str(count),
                                          "-i", f"u{interval_us}", "-a", attacker_ip, "-I", "lo", victim_ip],
                                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
            while flood.poll() is None and ctx.running():
                fetched += fetch(ctx, client_ip, (victim_ip, port), pages)
                ctx.pace(fetched, BENIGN_RATE)
            for source_port in range(BASE_PORT, BASE_PORT + _stop_flood(ctx, flood)):
                ctx.label(PROTO_TCP, (attacker_ip, source_port), (victim_ip, port), "Unknown", "dos")
    finally:
        stop_servers([server])
