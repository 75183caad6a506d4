"""HTTP/1.1: a Python web server and clients fetching pages over keep-alive connections."""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from netgptd.decode.packet import PROTO_TCP
from netgptd.lab.scenario import LabContext, scenario
from netgptd.lab.scenarios._servers import well_known_port

PAGES = ["/", "/index.html", "/news", "/api/items?page=2", "/static/app.js"]


class _Pages(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        body = (f"<html><body>{self.path}</body></html>" * 20).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def serve_http(ip: str, port: int, handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    """A threaded HTTP server on ip:port, running until ``shutdown()``."""
    server = ThreadingHTTPServer((ip, port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@scenario("http1", "benign", "HTTP/1.1 page fetches (Python http.server and http.client)")
def http1(ctx: LabContext) -> None:
    server_ip, client_ip = ctx.host(10), ctx.host(20)
    port = well_known_port(ctx, server_ip, 80)
    server = serve_http(server_ip, port, _Pages)
    try:
        ctx.wait_listening(server_ip, port)
        sent = 0
        while ctx.running():
            cport = ctx.free_port(client_ip)
            conn = http.client.HTTPConnection(server_ip, port, timeout=5, source_address=(client_ip, cport))
            for path in PAGES:
                conn.request("GET", path, headers={"User-Agent": "netgptd-lab"})
                conn.getresponse().read()
                sent += 1
            conn.close()
            ctx.label(PROTO_TCP, (client_ip, cport), (server_ip, port), "HTTP")
            ctx.pace(sent * 20)
    finally:
        server.shutdown()
        server.server_close()
