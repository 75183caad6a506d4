"""HTTP basic-auth password guessing: hydra's http-get module against the lab
HTTP server with every page behind a password no word list holds. The
client ports come from the server's accept log."""

from __future__ import annotations

import base64
import secrets

from netgptd.lab.scenario import LabContext, scenario
from netgptd.lab.scenarios._attack_targets import ATTACKER, VICTIM, hydra, label_peers, serve_logged_http, stop_servers
from netgptd.lab.scenarios._servers import well_known_port
from netgptd.lab.scenarios.http1 import _Pages

DENIED = b"<html><body><h1>401 Unauthorized</h1></body></html>"


class _Protected(_Pages):
    """The lab pages behind HTTP basic auth."""

    credentials = "Basic " + base64.b64encode(f"netgptd-lab:{secrets.token_hex(16)}".encode()).decode()

    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        if self.headers.get("Authorization") == self.credentials:
            super().do_GET()
            return
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="netgptd-lab admin"')
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(DENIED)))
        self.end_headers()
        self.wfile.write(DENIED)


@scenario("bruteforce-http", "attack", "HTTP basic-auth password guessing (hydra http-get) against the lab HTTP server",
          requires=("hydra", "ip"))  # fmt: skip
def bruteforce_http(ctx: LabContext) -> None:
    victim_ip, attacker_ip = ctx.host(VICTIM), ctx.host(ATTACKER)
    port = well_known_port(ctx, victim_ip, 80)
    server = serve_logged_http(victim_ip, port, _Protected)
    try:
        ctx.wait_listening(victim_ip, port)
        hydra(ctx, (victim_ip, port), ["http-get", "/admin/"])
    finally:
        stop_servers([server])
    label_peers(ctx, server.peers, attacker_ip, (victim_ip, port), "HTTP", "bruteforce")
