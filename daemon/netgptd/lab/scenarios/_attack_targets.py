"""What the attack scenarios share: the roles' host numbers, victim servers
that keep their own accept log, plain HTTP fetches over bound sockets, the lab DNS
responder, and hydra's word lists and loop."""

from __future__ import annotations

import http.client
import socket
import socketserver
import threading
from collections.abc import Iterable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import NamedTuple

import structlog
from dnslib import QTYPE, RCODE, RR, A, DNSLabel, DNSRecord
from dnslib.server import BaseResolver, DNSHandler, DNSLogger, DNSServer, UDPServer

from netgptd.decode.packet import PROTO_TCP
from netgptd.lab.safety import LabError
from netgptd.lab.scenario import BENIGN, LabContext
from netgptd.lab.scenarios._servers import QuietErrors, routed_source, serve_in_thread, well_known_port

log = structlog.get_logger(__name__)

VICTIM, CLIENT, ATTACKER = 10, 20, 66  # host numbers of the roles (ctx.host(n))
USER_AGENT = "netgptd-lab"

Peer = tuple[str, int]


class AcceptLogHTTPServer(QuietErrors, ThreadingHTTPServer):
    """A threaded HTTP server whose ``peers`` lists the (ip, port) of every
    connection it accepted: its own accept log, for exact labels. A client
    hanging up mid-request (a scanner, a slow attack) is logged at debug level."""

    daemon_threads = True

    def __init__(self, address: Peer, handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self.peers: list[Peer] = []

    def verify_request(self, request: object, client_address: Peer) -> bool:  # type: ignore[override]
        self.peers.append(client_address)
        return True


def serve_logged_http(ip: str, port: int, handler: type[BaseHTTPRequestHandler]) -> AcceptLogHTTPServer:
    """An AcceptLogHTTPServer on ip:port in a daemon thread; end it with
    ``stop_servers``."""
    return serve_in_thread(AcceptLogHTTPServer((ip, port), handler))


def stop_servers(servers: Iterable[socketserver.BaseServer]) -> None:
    """Shut the servers down together (each ``shutdown()`` waits up to its
    half-second poll) and close their sockets."""
    servers = list(servers)
    stopping = [threading.Thread(target=server.shutdown) for server in servers]
    for thread in stopping:
        thread.start()
    for thread in stopping:
        thread.join()
    for server in servers:
        server.server_close()


def label_peers(ctx: LabContext, peers: Iterable[Peer], client_ip: str, server: Peer, app: str,
                attack: str = BENIGN) -> None:  # fmt: skip
    """Label the TCP flow of every accepted connection that came from ``client_ip``
    (readiness probes come from elsewhere and stay unlabelled)."""
    for ip, port in peers:
        if ip == client_ip:
            ctx.label(PROTO_TCP, (ip, port), server, app, attack)


def run_timed_tool(ctx: LabContext, argv: Sequence[str], timeout: float, **kwargs: object) -> str:
    """Run a tool that the time limit may stop (a negative exit status, no
    error); its output, or LabError if it failed by itself."""
    done = ctx.supervisor.run(argv, timeout=timeout, **kwargs)
    output: str = done.stdout.decode(errors="replace")
    if done.returncode > 0:
        said = output.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        raise LabError(f"{ctx.scenario}: {argv[0]} failed: {said[0]}")
    return output


class Request(NamedTuple):
    method: str
    path: str
    body: bytes | None = None


def fetch(ctx: LabContext, client_ip: str, server: Peer, requests: Iterable[Request],
          attack: str = BENIGN) -> int:  # fmt: skip
    """Send ``requests`` over one keep-alive connection from a bound port of
    ``client_ip``, read every response, and label the flow; returns how many
    requests were sent."""
    client = (client_ip, ctx.free_port(client_ip))
    conn = http.client.HTTPConnection(*server, timeout=5, source_address=client)
    sent = 0
    try:
        for request in requests:
            headers = {"User-Agent": USER_AGENT}
            if request.body is not None:
                headers["Content-Type"] = "application/x-www-form-urlencoded"
            conn.request(request.method, request.path, body=request.body, headers=headers)
            conn.getresponse().read()
            sent += 1
    finally:
        conn.close()
        ctx.label(PROTO_TCP, client, server, "HTTP", attack)
    return sent


class LabZone(BaseResolver):
    """The lab's DNS server: an A record with ``address`` for every name
    under ``zone``, NXDOMAIN for names elsewhere; subclasses answer more."""

    def __init__(self, zone: str, address: str) -> None:
        self.zone = DNSLabel(zone)
        self.address = address

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        reply = request.reply()
        qname = request.q.qname
        if not qname.matchSuffix(self.zone):
            reply.header.rcode = RCODE.NXDOMAIN
        elif request.q.qtype == QTYPE.A:
            reply.add_answer(RR(qname, QTYPE.A, rdata=A(self.address), ttl=60))
        return reply


class _QuietUDPServer(QuietErrors, UDPServer):
    pass


def serve_dns(ctx: LabContext, ip: str, resolver: BaseResolver) -> DNSServer:
    """A UDP DNS server for ``resolver`` on ip:53 (or a free port where 53 is
    taken) in a daemon thread; end it with ``stop_servers([dns.server])``."""
    port = well_known_port(ctx, ip, 53, (socket.SOCK_DGRAM,))
    quiet = DNSLogger(logf=lambda line: log.debug("lab_dns_server", scenario=ctx.scenario, line=line))
    server = DNSServer(resolver, address=ip, port=port, logger=quiet, server=_QuietUDPServer)
    server.start_thread()
    return server


# hydra's word lists: the victims accept none of these logins
USERS = ("admin", "root", "test", "guest", "oracle", "ubuntu")
PASSWORDS = ("123456", "password", "admin", "letmein", "qwerty", "welcome", "changeme", "12345678", "toor",
             "P@ssw0rd")  # fmt: skip
HYDRA_TASKS = 2
HYDRA_WAIT_S = 2  # hydra's -w: how long to wait for a response


def hydra(ctx: LabContext, victim: Peer, service: Sequence[str]) -> None:
    """Guess logins with hydra (2 tasks, the word lists above) from the
    attacker's address against ``service`` (hydra's service name and its
    options) on ``victim``, run after run until the time is up."""
    users, passwords = ctx.workdir / "users.txt", ctx.workdir / "passwords.txt"
    users.write_text("\n".join(USERS) + "\n")
    passwords.write_text("\n".join(PASSWORDS) + "\n")
    argv = ["hydra", "-I", "-t", str(HYDRA_TASKS), "-w", str(HYDRA_WAIT_S), "-L", str(users), "-P", str(passwords),
            "-s", str(victim[1]), victim[0], *service]  # fmt: skip
    attempts = 0
    with routed_source(ctx, victim[0], ctx.host(ATTACKER)):
        while ctx.running():  # hydra has no time limit of its own: it is stopped at the scenario's end
            run_timed_tool(ctx, argv, timeout=ctx.remaining, cwd=ctx.workdir)
            attempts += len(USERS) * len(PASSWORDS)
            ctx.pace(attempts)
