"""QUIC: HTTP/3 over QUIC v1 with aioquic on both sides: a server answering
page requests with the openssl-made certificate of the tls scenario, and
browsers-like clients that each open a connection from their own bound UDP
port, fetch a few pages on parallel streams and close it."""

from __future__ import annotations

import asyncio
import random
import socket
from typing import TYPE_CHECKING, Any

from netgptd.decode.packet import PROTO_UDP
from netgptd.lab.scenario import LabContext
from netgptd.lab.scenarios._servers import LoopThread, Variant, on_both_ports, service_port, wait_udp_bound
from netgptd.lab.scenarios.http1 import PAGES
from netgptd.lab.scenarios.tls import SERVER_NAMES, _certificate

if TYPE_CHECKING:
    from aioquic.asyncio import QuicConnectionProtocol
    from aioquic.quic.configuration import QuicConfiguration

STREAM_TIMEOUT_S = 5.0


def _protocols() -> tuple[type[QuicConnectionProtocol], type[QuicConnectionProtocol]]:
    """The HTTP/3 server and client protocols (aioquic is imported only when the scenario runs)."""
    from aioquic.asyncio import QuicConnectionProtocol
    from aioquic.h3.connection import H3Connection
    from aioquic.h3.events import DataReceived, HeadersReceived

    class Server(QuicConnectionProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._http = H3Connection(self._quic)

        def quic_event_received(self, event: Any) -> None:
            for h3 in self._http.handle_event(event):
                if isinstance(h3, HeadersReceived):
                    path = dict(h3.headers).get(b":path", b"/").decode()
                    body = (f"<html><body>{path}</body></html>" * 20).encode()
                    self._http.send_headers(h3.stream_id, [(b":status", b"200"), (b"content-type", b"text/html"),
                                                           (b"content-length", str(len(body)).encode())])  # fmt: skip
                    self._http.send_data(h3.stream_id, body, end_stream=True)
            self.transmit()

    class Client(QuicConnectionProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._http = H3Connection(self._quic)
            self._pending: dict[int, tuple[asyncio.Future[bytes], bytearray]] = {}

        async def get(self, authority: str, path: str) -> bytes:
            stream_id = self._quic.get_next_available_stream_id()
            headers = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", authority.encode()),
                       (b":path", path.encode()), (b"user-agent", b"netgptd-lab")]  # fmt: skip
            self._http.send_headers(stream_id, headers, end_stream=True)
            done: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
            self._pending[stream_id] = (done, bytearray())
            self.transmit()
            return await asyncio.wait_for(done, STREAM_TIMEOUT_S)

        def quic_event_received(self, event: Any) -> None:
            for h3 in self._http.handle_event(event):
                if isinstance(h3, (DataReceived, HeadersReceived)) and h3.stream_id in self._pending:
                    done, body = self._pending[h3.stream_id]
                    if isinstance(h3, DataReceived):
                        body += h3.data
                    if h3.stream_ended:
                        done.set_result(bytes(body))

    return Server, Client


async def _browse(client: type[QuicConnectionProtocol], config: QuicConfiguration, server: tuple[str, int],
                  bind: tuple[str, int], paths: list[str]) -> None:  # fmt: skip
    """One connection from ``bind``: the pages on parallel streams, then a clean close."""
    from aioquic.quic.connection import QuicConnection

    loop = asyncio.get_running_loop()
    connection = QuicConnection(configuration=config)
    transport, protocol = await loop.create_datagram_endpoint(lambda: client(connection), local_addr=bind)
    try:
        protocol.connect(server)
        await asyncio.wait_for(protocol.wait_connected(), STREAM_TIMEOUT_S)
        await asyncio.gather(*(protocol.get(config.server_name or "", path) for path in paths))
    finally:
        protocol.close()
        await protocol.wait_closed()
        transport.close()


@on_both_ports("quic", "HTTP/3 page fetches over QUIC v1 (aioquic server and clients)",
               requires=("openssl",), python=("aioquic",))  # fmt: skip
def quic(ctx: LabContext, variant: Variant) -> None:
    from aioquic.asyncio import serve
    from aioquic.h3.connection import H3_ALPN
    from aioquic.quic.configuration import QuicConfiguration

    server_ip, client_ip = ctx.host(10), ctx.host(20)
    server = (server_ip, service_port(ctx, server_ip, 443, variant, kinds=(socket.SOCK_DGRAM,)))
    cert, key = _certificate(ctx)
    server_config = QuicConfiguration(is_client=False, alpn_protocols=H3_ALPN)
    server_config.load_cert_chain(cert, key)
    server_protocol, client_protocol = _protocols()
    rng = random.Random(ctx.index)
    loop = LoopThread()
    try:
        quic_server = loop.run(serve(*server, configuration=server_config, create_protocol=server_protocol))
        try:
            wait_udp_bound(ctx, *server)
            for sent in ctx.rounds():
                config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, cafile=cert,
                                           server_name=rng.choice(SERVER_NAMES))  # fmt: skip
                bind = (client_ip, ctx.free_port(client_ip, socket.SOCK_DGRAM))
                paths = rng.sample(PAGES, rng.randrange(1, len(PAGES) + 1))
                loop.run(_browse(client_protocol, config, server, bind, paths))
                ctx.label(PROTO_UDP, bind, server, "QUIC")
                ctx.pace(sent * 20)
        finally:
            quic_server.close()
    finally:
        loop.close()
