"""FTP password guessing: hydra against a pyftpdlib server whose only account
is in no word list. The client ports come from the server's accept log."""

from __future__ import annotations

import secrets

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.ioloop import IOLoop
from pyftpdlib.servers import FTPServer

from netgptd.lab.scenario import LabContext, scenario
from netgptd.lab.scenarios._attack_targets import ATTACKER, VICTIM, Peer, hydra, label_peers
from netgptd.lab.scenarios._servers import ftp_serving, well_known_port

FAILED_LOGIN_DELAY_S = 0.5  # pyftpdlib's default (3 s) would hold hydra to a login every few seconds
class _AcceptLogFTPServer(FTPServer):  # type: ignore[misc]
    """pyftpdlib's server with an accept log: ``peers``."""

    def __init__(self, address: Peer, handler: type[FTPHandler]) -> None:
        super().__init__(address, handler, ioloop=IOLoop())
        self.peers: list[Peer] = []

    def handle_accepted(self, sock: object, addr: tuple) -> object:
        self.peers.append((addr[0], addr[1]))
        return super().handle_accepted(sock, addr)


@scenario("bruteforce-ftp", "attack", "FTP password guessing (hydra) against a pyftpdlib server",
          requires=("hydra", "ip"), python=("pyftpdlib",))  # fmt: skip
def bruteforce_ftp(ctx: LabContext) -> None:
    victim_ip, attacker_ip = ctx.host(VICTIM), ctx.host(ATTACKER)
    authorizer = DummyAuthorizer()
    authorizer.add_user("netgptd-lab", secrets.token_hex(16), str(ctx.workdir), perm="elr")
    handler = type("LabFTPHandler", (FTPHandler,), {"authorizer": authorizer,
                                                     "auth_failed_timeout": FAILED_LOGIN_DELAY_S})  # fmt: skip
    port = well_known_port(ctx, victim_ip, 21)
    server = _AcceptLogFTPServer((victim_ip, port), handler)
    with ftp_serving(server):
        ctx.wait_listening(victim_ip, port)
        hydra(ctx, (victim_ip, port), ["ftp"])
    label_peers(ctx, server.peers, attacker_ip, (victim_ip, port), "FTP_CONTROL", "bruteforce")
