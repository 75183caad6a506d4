"""HTTP/2 over cleartext (h2c, prior knowledge): an h2 server and clients that
multiplex several GETs as concurrent streams on each connection."""

from __future__ import annotations

import json
import socket
import socketserver

from netgptd.decode.packet import PROTO_TCP
from netgptd.lab.safety import LabError
from netgptd.lab.scenario import LabContext, scenario
from netgptd.lab.scenarios._servers import QuietTCPServer, serve_in_thread, well_known_port

PATHS = ["/", "/api/v2/items", "/api/v2/items/7", "/static/app.css", "/static/app.js", "/favicon.ico"]


class _H2Handler(socketserver.BaseRequestHandler):
    """Answers every request on the connection with a small JSON body."""

    def handle(self) -> None:
        from h2.config import H2Configuration
        from h2.connection import H2Connection
        from h2.events import ConnectionTerminated, RequestReceived

        conn = H2Connection(H2Configuration(client_side=False, header_encoding="utf-8"))
        conn.initiate_connection()
        self.request.sendall(conn.data_to_send())
        while data := self.request.recv(65535):
            for event in conn.receive_data(data):
                if isinstance(event, RequestReceived):
                    path = dict(event.headers)[":path"]
                    body = json.dumps({"path": path, "items": list(range(40))}).encode()
                    conn.send_headers(event.stream_id, [
                        (":status", "200"), ("content-type", "application/json"),
                        ("content-length", str(len(body))), ("server", "netgptd-lab"),
                    ])  # fmt: skip
                    conn.send_data(event.stream_id, body, end_stream=True)
                elif isinstance(event, ConnectionTerminated):
                    return
            self.request.sendall(conn.data_to_send())


def _fetch(server: tuple[str, int], client: tuple[str, int], paths: list[str]) -> None:
    """GET ``paths`` as concurrent streams on one connection from ``client``."""
    from h2.config import H2Configuration
    from h2.connection import H2Connection
    from h2.events import DataReceived, StreamEnded

    with socket.create_connection(server, timeout=5, source_address=client) as sock:
        conn = H2Connection(H2Configuration(client_side=True, header_encoding="utf-8"))
        conn.initiate_connection()
        pending = set()
        for path in paths:
            stream_id = conn.get_next_available_stream_id()
            conn.send_headers(stream_id, [
                (":method", "GET"), (":scheme", "http"), (":authority", f"{server[0]}:{server[1]}"),
                (":path", path), ("user-agent", "netgptd-lab"), ("accept", "application/json"),
            ], end_stream=True)  # fmt: skip
            pending.add(stream_id)
        sock.sendall(conn.data_to_send())
        while pending:
            data = sock.recv(65535)
            if not data:
                raise LabError(f"http2: server closed with {len(pending)} streams open")
            for event in conn.receive_data(data):
                if isinstance(event, DataReceived):
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, StreamEnded):
                    pending.discard(event.stream_id)
            sock.sendall(conn.data_to_send())
        conn.close_connection()
        sock.sendall(conn.data_to_send())


@scenario("http2", "benign", "HTTP/2 cleartext (h2c) GETs multiplexed on streams (h2 server and client)",
          python=("h2",))  # fmt: skip
def http2(ctx: LabContext) -> None:
    server_ip, client_ip = ctx.host(10), ctx.host(20)
    port = well_known_port(ctx, server_ip, 80)
    server = serve_in_thread(QuietTCPServer((server_ip, port), _H2Handler))
    try:
        ctx.wait_listening(server_ip, port)
        sent = 0
        while ctx.running():
            cport = ctx.free_port(client_ip)
            _fetch((server_ip, port), (client_ip, cport), PATHS)
            ctx.label(PROTO_TCP, (client_ip, cport), (server_ip, port), "HTTP2")
            sent += len(PATHS)
            ctx.pace(sent * 20)
    finally:
        server.shutdown()
        server.server_close()
