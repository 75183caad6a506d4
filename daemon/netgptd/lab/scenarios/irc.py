"""IRC: an ngIRCd of the lab's own (its config in the workdir, no PAM, no
ident look-ups) and chat clients speaking IRC over their own bound sockets:
a channel regular who stays for the whole run, and people who connect,
join, talk, answer the server's PINGs and leave."""

from __future__ import annotations

import random
import socket
import threading
from typing import BinaryIO

from netgptd.decode.packet import PROTO_TCP
from netgptd.lab.safety import LabError
from netgptd.lab.scenario import LabContext
from netgptd.lab.scenarios._servers import Variant, on_both_ports, service_port, start_daemon

CHANNEL = "#netgptd-lab"
NGIRCD_CONFIG = """\
[Global]
  Name = irc.netgptd.lab
  Info = netgptd lab IRC
  Listen = {ip}
  Ports = {port}
  PidFile = {work}/ngircd.pid
  MotdPhrase = Welcome to the lab
  ServerUID = nobody
  ServerGID = nogroup
[Limits]
  PingTimeout = 20
  MaxConnectionsIP = 0
  ConnectRetry = 60
[Options]
  PAM = no
  Ident = no
  DNS = no
  SyslogFacility = local7
"""
LINES = ["morning all", "is the build green?", "deploying 4411 to staging", "lunch in 10?", "LGTM, merging",
         "who broke the tests", "rolling back", "coffee machine fixed"]  # fmt: skip


class _Client:
    """An IRC client over a socket bound to ``bind``, registered as ``nick``."""

    def __init__(self, server: tuple[str, int], bind: tuple[str, int], nick: str) -> None:
        self.sock = socket.create_connection(server, timeout=5, source_address=bind)
        self.stream: BinaryIO = self.sock.makefile("rwb")
        self.send(f"NICK {nick}", f"USER {nick} 0 * :Lab user {nick}")
        self.wait_for(" 376 ", " 422 ")  # end of MOTD (or no MOTD): registered

    def send(self, *lines: str) -> None:
        self.stream.write("".join(f"{line}\r\n" for line in lines).encode())
        self.stream.flush()

    def wait_for(self, *marks: str) -> str:
        """Read lines, answering PINGs, until one holds a mark."""
        while True:
            line = self.stream.readline().decode(errors="replace")
            if not line:
                raise LabError(f"irc: the server closed the connection waiting for {marks}")
            if line.startswith("PING "):
                self.send("PONG " + line[5:].strip())
            elif line.startswith("ERROR"):
                raise LabError(f"irc: {line.strip()}")
            elif any(mark in line for mark in marks):
                return line

    def drain(self) -> None:
        """Read the channel, answering PINGs, until the server closes the
        connection (after QUIT it sends ERROR :Closing)."""
        self.sock.settimeout(None)  # a quiet channel is no error
        try:
            self.wait_for("\r\n\r\n")  # no line holds it: reads to the end
        except (OSError, LabError):
            pass

    def close(self) -> None:
        self.stream.close()
        self.sock.close()


@on_both_ports("irc", "IRC channel chat (ngIRCd, raw IRC clients)", requires=("ngircd",))
def irc(ctx: LabContext, variant: Variant) -> None:
    server_ip, client_ip = ctx.host(10), ctx.host(20)
    server = (server_ip, service_port(ctx, server_ip, 6667, variant))
    config = ctx.workdir / "ngircd.conf"
    config.write_text(NGIRCD_CONFIG.format(ip=server_ip, port=server[1], work=ctx.workdir))
    config.chmod(0o644)
    start_daemon(ctx, "ngircd", ["ngircd", "-n", "-f", str(config)], *server)
    rng = random.Random(ctx.index)
    regular_bind = (ctx.host(21), ctx.free_port(ctx.host(21)))
    regular = _Client(server, regular_bind, "regular")
    regular.send(f"JOIN {CHANNEL}")
    listening = threading.Thread(target=regular.drain, daemon=True)
    listening.start()
    sent = 0
    try:
        for visit in ctx.rounds():
            bind = (client_ip, ctx.free_port(client_ip))
            person = _Client(server, bind, f"user{visit % 50}")
            try:
                person.send(f"JOIN {CHANNEL}")
                person.wait_for(" 366 ")  # end of NAMES: joined
                for line in rng.sample(LINES, rng.randrange(1, 4)):
                    person.send(f"PRIVMSG {CHANNEL} :{line}")
                    sent += 1
                person.send(f"PART {CHANNEL} :later", "QUIT :bye")
                person.drain()
            finally:
                person.close()
            ctx.label(PROTO_TCP, bind, server, "IRC")
            ctx.pace(sent * 20)
    finally:
        regular.send("QUIT :end of the run")
        listening.join(5)
        regular.close()
        ctx.label(PROTO_TCP, regular_bind, server, "IRC")
