"""FTP: a pyftpdlib server in passive mode and ftplib clients that log in,
list directories and download files. The control connection is FTP_CONTROL,
each passive data connection (listing or file) FTP_DATA."""

from __future__ import annotations

import ftplib
import random
import socket
from typing import TYPE_CHECKING

from netgptd.decode.packet import PROTO_TCP
from netgptd.lab.scenario import LabContext, scenario
from netgptd.lab.scenarios._servers import ftp_serving, well_known_port

if TYPE_CHECKING:
    from pyftpdlib.servers import FTPServer

USER, PASSWORD = "lab", "lab-ftp-password"
FILES = {"readme.txt": 600, "pub/report.csv": 24_000, "pub/firmware.bin": 180_000}  # name: size in bytes


class _LabFTP(ftplib.FTP):
    """ftplib's client, noting each passive data connection's (client, server) addresses."""

    def __init__(self, source_address: tuple[str, int]) -> None:
        super().__init__(source_address=source_address, timeout=5)
        self.data_flows: list[tuple[tuple[str, int], tuple[str, int]]] = []

    def ntransfercmd(self, cmd: str, rest: int | str | None = None) -> tuple[socket.socket, int | None]:
        conn, size = super().ntransfercmd(cmd, rest)
        self.data_flows.append((conn.getsockname(), conn.getpeername()))
        return conn, size


def _server(ctx: LabContext, ip: str, port: int) -> FTPServer:
    """A pyftpdlib server, with its own IO loop, over a tree of files in the workdir."""
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler
    from pyftpdlib.ioloop import IOLoop
    from pyftpdlib.servers import FTPServer

    root = ctx.workdir / "ftp"
    rng = random.Random(ctx.index)
    for name, size in FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(size) if name.endswith(".bin") else b"netgptd lab,42\n" * (size // 15))
    authorizer = DummyAuthorizer()
    authorizer.add_user(USER, PASSWORD, str(root), perm="elr")
    handler = type("LabFTPHandler", (FTPHandler,), {"authorizer": authorizer, "banner": "netgptd lab FTP ready"})
    return FTPServer((ip, port), handler, ioloop=IOLoop())


@scenario("ftp", "benign", "FTP logins, listings and downloads in passive mode (pyftpdlib server, ftplib clients)",
          python=("pyftpdlib",))  # fmt: skip
def ftp(ctx: LabContext) -> None:
    server_ip, client_ip = ctx.host(10), ctx.host(20)
    port = well_known_port(ctx, server_ip, 21)
    with ftp_serving(_server(ctx, server_ip, port)):
        ctx.wait_listening(server_ip, port)
        sent = 0
        while ctx.running():
            with _LabFTP(source_address=(client_ip, 0)) as client:
                client.connect(server_ip, port)
                control = client.sock.getsockname()
                client.login(USER, PASSWORD)
                client.retrlines("LIST", lambda line: None)
                client.nlst("pub")
                for name in FILES:
                    client.retrbinary(f"RETR {name}", lambda block: None)
                client.quit()
            ctx.label(PROTO_TCP, control, (server_ip, port), "FTP_CONTROL")
            for data_client, data_server in client.data_flows:
                ctx.label(PROTO_TCP, data_client, data_server, "FTP_DATA")
            sent += 2 + len(FILES)
            ctx.pace(sent * 40)
