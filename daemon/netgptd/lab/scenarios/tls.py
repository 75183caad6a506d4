"""TLS 1.3 web: a Python ``ssl`` HTTPS server with a self-signed certificate
(made at run time with the openssl CLI) and clients fetching pages with SNI."""

from __future__ import annotations

import http.client
import itertools
import socket
import ssl
from http.server import ThreadingHTTPServer

from netgptd.decode.packet import PROTO_TCP
from netgptd.lab.scenario import LabContext, scenario
from netgptd.lab.scenarios._servers import QuietErrors, run_tool, serve_in_thread, well_known_port
from netgptd.lab.scenarios.http1 import PAGES, _Pages

SERVER_NAMES = ["www.netgptd.lab", "api.netgptd.lab", "static.netgptd.lab"]


class _HTTPSServer(QuietErrors, ThreadingHTTPServer):
    """An HTTP server that does the TLS handshake in each connection's thread."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], context: ssl.SSLContext) -> None:
        super().__init__(address, _Pages)
        self.context = context

    def finish_request(self, request: socket.socket, client_address: tuple[str, int]) -> None:  # type: ignore[override]
        with self.context.wrap_socket(request, server_side=True) as tls:
            super().finish_request(tls, client_address)


def _certificate(ctx: LabContext) -> tuple[str, str]:
    """A self-signed EC certificate for SERVER_NAMES, as (certificate, key) paths."""
    cert, key = ctx.workdir / "server.crt", ctx.workdir / "server.key"
    names = ",".join(f"DNS:{name}" for name in SERVER_NAMES)
    run_tool(ctx, ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                   "-nodes", "-days", "2", "-subj", f"/CN={SERVER_NAMES[0]}", "-addext", f"subjectAltName={names}",
                   "-keyout", str(key), "-out", str(cert)])  # fmt: skip
    return str(cert), str(key)


def _contexts(cert: str, key: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """TLS 1.3-only server and client contexts; the client trusts only ``cert``."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(cafile=cert)
    for context in (server, client):
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        context.set_alpn_protocols(["http/1.1"])
    return server, client


@scenario("tls", "benign", "TLS 1.3 HTTPS page fetches with SNI (Python ssl, openssl-made certificate)",
          requires=("openssl",))  # fmt: skip
def tls(ctx: LabContext) -> None:
    server_ip, client_ip = ctx.host(10), ctx.host(20)
    port = well_known_port(ctx, server_ip, 443)
    server_context, client_context = _contexts(*_certificate(ctx))
    server = serve_in_thread(_HTTPSServer((server_ip, port), server_context))
    try:
        ctx.wait_listening(server_ip, port)
        sent = 0
        for name in itertools.cycle(SERVER_NAMES):
            if not ctx.running():
                break
            cport = ctx.free_port(client_ip)
            raw = socket.create_connection((server_ip, port), timeout=5, source_address=(client_ip, cport))
            conn = http.client.HTTPSConnection(name, port, timeout=5, context=client_context)
            conn.sock = client_context.wrap_socket(raw, server_hostname=name)  # the name is no address to connect to
            for path in PAGES:
                conn.request("GET", path, headers={"User-Agent": "netgptd-lab"})
                conn.getresponse().read()
                sent += 1
            conn.close()
            ctx.label(PROTO_TCP, (client_ip, cport), (server_ip, port), "TLS")
            ctx.pace(sent * 20)
    finally:
        server.shutdown()
        server.server_close()
