"""XMPP: a Prosody of the lab's own (its config and data in the workdir,
run as the prosody user, client connections only, plaintext SASL allowed
without TLS) and chat clients speaking XMPP over their own bound sockets:
stream, SASL PLAIN login, resource binding, roster, presence and a few
chat messages (kept for peers offline), then the stream's close. Labelled
``Jabber``, nDPI's name."""

from __future__ import annotations

import base64
import random
import socket

from netgptd.decode.packet import PROTO_TCP
from netgptd.lab.safety import LabError
from netgptd.lab.scenario import LabContext
from netgptd.lab.scenarios._servers import Variant, on_both_ports, owned_dir, run_tool, service_port, start_daemon

DOMAIN, SERVER_USER = "netgptd.lab", "prosody"
USERS = {"alice": "alice-xmpp", "bob": "bob-xmpp", "carol": "carol-xmpp"}
LINES = ["are you around?", "the deploy is done", "call in 5", "thanks!", "see the ticket", "on my way"]
PROSODY_CONFIG = """\
pidfile = "{data}/prosody.pid"
data_path = "{data}"
certificates = "{data}"
daemonize = false
interfaces = {{ "{ip}" }}
c2s_ports = {{ {port} }}
c2s_direct_tls_ports = {{ }}
s2s_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
modules_enabled = {{ "roster"; "saslauth"; "offline"; "disco"; "ping"; "presence"; "message"; "iq"; "vcard_legacy" }}
modules_disabled = {{ "s2s"; "c2s_direct_tls"; "http"; "posix" }}
authentication = "internal_plain"
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
log = {{ {{ levels = {{ min = "warn" }}, to = "console" }} }}
VirtualHost "{domain}"
"""
STREAM = (f"<?xml version='1.0'?><stream:stream to='{DOMAIN}' xmlns='jabber:client' "
          "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")  # fmt: skip


class _Client:
    """A plain XMPP client on a socket bound to ``bind``."""

    def __init__(self, server: tuple[str, int], bind: tuple[str, int]) -> None:
        self.sock = socket.create_connection(server, timeout=5, source_address=bind)
        self.buffer = b""

    def send(self, xml: str) -> None:
        self.sock.sendall(xml.encode())

    def expect(self, mark: str) -> str:
        """Read until ``mark`` arrives; what came up to it."""
        while mark.encode() not in self.buffer:
            data = self.sock.recv(65536)
            if not data:
                raise LabError(f"xmpp: the server closed the stream waiting for {mark!r}")
            if b"<failure" in data or b"type='error'" in data:
                raise LabError(f"xmpp: {data[:200].decode(errors='replace')}")
            self.buffer += data
        head, _, self.buffer = self.buffer.partition(mark.encode())
        return head.decode(errors="replace")

    def login(self, user: str) -> None:
        self.send(STREAM)
        self.expect("</stream:features>")
        token = base64.b64encode(f"\0{user}\0{USERS[user]}".encode()).decode()
        self.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>")
        self.expect("<success")
        self.send(STREAM)  # a new stream after SASL
        self.expect("</stream:features>")
        self.send("<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                  "<resource>laptop</resource></bind></iq>")  # fmt: skip
        self.expect("</iq>")


def _session(client: _Client, user: str, rng: random.Random) -> None:
    client.login(user)
    client.send("<iq type='get' id='roster1'><query xmlns='jabber:iq:roster'/></iq>")
    client.expect("</iq>")
    client.send("<presence><show>chat</show><status>at the lab</status></presence>")
    for i, line in enumerate(rng.sample(LINES, rng.randrange(1, 4))):
        peer = rng.choice([u for u in USERS if u != user])
        client.send(f"<message to='{peer}@{DOMAIN}' type='chat' id='m{i}'><body>{line}</body></message>")
    client.send("<iq type='get' id='ping1'><ping xmlns='urn:xmpp:ping'/></iq>")
    client.expect("ping1")
    client.send("<presence type='unavailable'/></stream:stream>")
    client.expect("</stream:stream>")


@on_both_ports("xmpp", "XMPP chat sessions (Prosody, raw XMPP clients)", requires=("prosody", "prosodyctl"))
def xmpp(ctx: LabContext, variant: Variant) -> None:
    server_ip, client_ip = ctx.host(10), ctx.host(20)
    server = (server_ip, service_port(ctx, server_ip, 5222, variant))
    data = owned_dir(ctx, "prosody", SERVER_USER)
    config = ctx.workdir / "prosody.cfg.lua"
    config.write_text(PROSODY_CONFIG.format(data=data, ip=server_ip, port=server[1], domain=DOMAIN))
    config.chmod(0o644)
    for user, password in USERS.items():
        run_tool(ctx, ["prosodyctl", "--config", str(config), "register", user, DOMAIN, password], timeout=20)
    start_daemon(ctx, "prosody", ["prosody", "--config", str(config)], *server, user=SERVER_USER)
    rng = random.Random(ctx.index)
    for sent in ctx.rounds():
        bind = (client_ip, ctx.free_port(client_ip))
        client = _Client(server, bind)
        try:
            _session(client, list(USERS)[sent % len(USERS)], rng)
        finally:
            client.sock.close()
        ctx.label(PROTO_TCP, bind, server, "Jabber")
        ctx.pace(sent * 20)
