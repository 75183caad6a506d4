"""Scenarios, their context, and the flow labels they know for themselves.

A scenario is a function that starts servers and clients on its own
loopback addresses and records, for each flow it causes, the 5-tuple and
its labels. The client port comes from the scenario's own knowledge (a
client socket bound by the scenario, a pinned source port, a server's
accept log), never from reading the capture: the capture is checked
against the labels, not the other way round.
"""

from __future__ import annotations

import itertools
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from netgptd.decode.packet import PROTO_TCP, PROTO_UDP
from netgptd.eve import PROTO_NAMES
from netgptd.flow.community_id import community_id
from netgptd.lab.safety import MAX_RATE_PPS, LabError, Supervisor, assert_loopback, wait_until

BENIGN = "benign"
LAB_NET_PREFIX = "127.77"  # scenario i uses 127.77.i.0/24
PROBE_HOST = 254  # readiness probes come from here and are never labelled


EXACT = "exact"
ADDRESS_PLAN = "address_plan"


@dataclass(frozen=True)
class FlowLabel:
    """A labelled flow. ``source`` says how the scenario knows its 5-tuple:
    ``exact`` (a socket it bound, a pinned source port, a server's accept
    log) or ``address_plan`` (a LabelRule matched by addresses and ports)."""

    proto: int
    client_ip: str
    client_port: int
    server_ip: str
    server_port: int
    app: str
    attack: str = BENIGN
    source: str = EXACT

    @property
    def community_id(self) -> str:
        return community_id(socket.inet_aton(self.client_ip), socket.inet_aton(self.server_ip),
                            self.proto, self.client_port, self.server_port)  # fmt: skip

    def to_json(self, scenario: str) -> dict[str, object]:
        return {
            "community_id": self.community_id,
            "proto": PROTO_NAMES[self.proto],
            "src_ip": self.client_ip,
            "src_port": self.client_port,
            "dest_ip": self.server_ip,
            "dest_port": self.server_port,
            "app": self.app,
            "attack": self.attack,
            "scenario": scenario,
            "source": self.source,
        }


@dataclass(frozen=True)
class LabelRule:
    """Labels every flow from ``client_ip`` to ``server_ip`` (on ``server_ports``,
    or any) over ``proto``, for tools whose client ports a scenario cannot
    learn (nmap's connect scan, hydra). It is matched on addresses and ports
    alone, which the scenario assigned to the tool: never on content."""

    proto: int
    client_ip: str
    server_ip: str
    app: str
    attack: str
    server_ports: frozenset[int] | None = None

    def matches(self, proto: int, client_ip: str, server_ip: str, server_port: int) -> bool:
        return (proto == self.proto and client_ip == self.client_ip and server_ip == self.server_ip
                and (self.server_ports is None or server_port in self.server_ports))  # fmt: skip


@dataclass
class LabContext:
    """What a scenario gets: its addresses, time, processes and label book."""

    scenario: str
    index: int
    duration: float
    supervisor: Supervisor
    workdir: Path
    labels: list[FlowLabel] = field(default_factory=list)
    rules: list[LabelRule] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    max_rate: int = MAX_RATE_PPS

    @property
    def network(self) -> str:
        return f"{LAB_NET_PREFIX}.{self.index}.0/24"

    def host(self, n: int) -> str:
        """The scenario's address number ``n`` (1..254), e.g. server 10, client 20, attacker 66."""
        if not 0 < n < 255:
            raise LabError(f"host number {n} outside 1..254")
        address = f"{LAB_NET_PREFIX}.{self.index}.{n}"
        assert_loopback([address])
        return address

    @property
    def remaining(self) -> float:
        return max(0.0, self.started + self.duration - time.monotonic())

    def running(self) -> bool:
        return self.remaining > 0

    def rounds(self) -> Iterator[int]:
        """1, 2, 3, ... while the scenario runs, and 1 at least: a scenario
        whose servers took its whole time to start still makes one round."""
        for n in itertools.count(1):
            yield n
            if not self.running():
                return

    def label(self, proto: int, client: tuple[str, int], server: tuple[str, int], app: str,
              attack: str = BENIGN) -> None:  # fmt: skip
        if proto not in (PROTO_TCP, PROTO_UDP):
            raise LabError(f"labels are for TCP and UDP flows, not protocol {proto}")
        self.labels.append(FlowLabel(proto, client[0], client[1], server[0], server[1], app, attack))

    def label_rule(self, proto: int, client_ip: str, server_ip: str, app: str, attack: str,
                   server_ports: set[int] | range | None = None) -> None:  # fmt: skip
        """Label, after the capture, every flow of a tool by its addresses (see LabelRule)."""
        ports = frozenset(server_ports) if server_ports is not None else None
        self.rules.append(LabelRule(proto, client_ip, server_ip, app, attack, ports))

    def free_port(self, ip: str, kind: int = socket.SOCK_STREAM) -> int:
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind((ip, 0))
            return s.getsockname()[1]

    def wait_listening(self, ip: str, port: int, timeout: float = 10.0) -> None:
        """Block until a TCP server accepts on ip:port; the probes come from
        PROBE_HOST, so they are easy to tell from labelled flows."""

        def accepts() -> bool:
            try:
                with socket.create_connection((ip, port), timeout=0.5, source_address=(self.host(PROBE_HOST), 0)):
                    return True
            except OSError:
                return False

        if not wait_until(accepts, timeout):
            raise LabError(f"{self.scenario}: nothing listens on {ip}:{port} after {timeout:g} s")

    def pace(self, count: int, rate: float | None = None) -> None:
        """Sleep so that ``count`` sends since the start stay under ``rate`` per
        second (and ``max_rate``), but not past the scenario's end."""
        ahead = count / min(rate or self.max_rate, self.max_rate) - (time.monotonic() - self.started)
        if ahead > 0:
            time.sleep(min(ahead, self.remaining))


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: str  # "benign" or "attack"
    summary: str
    run: Callable[[LabContext], None]
    requires: tuple[str, ...] = ()  # programs on PATH
    python: tuple[str, ...] = ()  # importable modules


REGISTRY: dict[str, Scenario] = {}


def scenario(name: str, kind: str, summary: str, requires: tuple[str, ...] = (),
             python: tuple[str, ...] = ()) -> Callable[[Callable[[LabContext], None]], Callable[[LabContext], None]]:  # fmt: skip
    """Register a scenario function under ``name``."""

    def register(func: Callable[[LabContext], None]) -> Callable[[LabContext], None]:
        if name in REGISTRY:
            raise ValueError(f"scenario {name!r} registered twice")
        REGISTRY[name] = Scenario(name, kind, summary, func, requires, python)
        return func

    return register
