"""RADIUS: a FreeRADIUS of the lab's own (Debian's configuration copied into
the workdir with one virtual server: PAP logins from a users file,
accounting to a detail file) and radclient as a Wi-Fi controller: logins
(mostly right, now and then a wrong password) and session accounting.
radclient binds no address, so the client's comes from a route (see
routed_source); the client ports come from the server's debug log."""

from __future__ import annotations

import random
import re
import shutil
import socket
from pathlib import Path

from netgptd.decode.packet import PROTO_UDP
from netgptd.lab.safety import LabError
from netgptd.lab.scenario import LabContext
from netgptd.lab.scenarios._servers import (Variant, on_both_ports, routed_source, service_port, start_daemon,
                                            wait_udp_bound)  # fmt: skip

RADDB = Path("/etc/freeradius/3.0")
SERVER_USER, SECRET = "freerad", "lab-radius-secret"
USERS = {"alice": "alice-wifi", "bob": "bob-wifi", "carol": "carol-wifi", "guest-17": "guest-pass"}
RECEIVED = re.compile(r"Received \S+ Id \d+ from ([\d.]+):(\d+) to [\d.]+:(\d+)")
SITE = """\
server lab {{
  listen {{
    type = auth
    ipaddr = {ip}
    port = {auth}
  }}
  listen {{
    type = acct
    ipaddr = {ip}
    port = {acct}
  }}
  authorize {{
    preprocess
    files
    pap
  }}
  authenticate {{
    Auth-Type PAP {{
      pap
    }}
  }}
  preacct {{
    preprocess
  }}
  accounting {{
    detail
  }}
  post-auth {{
  }}
}}
"""


def _raddb(ctx: LabContext, ip: str, auth: int, acct: int) -> Path:
    """Debian's configuration with the lab's site, clients and users; no EAP
    (its inner-tunnel server listens on 127.0.0.1), no proxying; run and log
    folders in the workdir."""
    raddb, run = ctx.workdir / "raddb", ctx.workdir / "radius-run"
    shutil.copytree(RADDB, raddb, symlinks=True)
    for link in [*(raddb / "sites-enabled").iterdir(), raddb / "mods-enabled" / "eap"]:
        link.unlink()
    (raddb / "sites-enabled" / "lab").write_text(SITE.format(ip=ip, auth=auth, acct=acct))
    (raddb / "clients.conf").write_text(f"client lab {{\n  ipaddr = {ctx.network}\n  secret = {SECRET}\n}}\n")
    (raddb / "mods-config" / "files" / "authorize").write_text(
        "".join(f'{user} Cleartext-Password := "{password}"\n' for user, password in USERS.items()))
    conf = raddb / "radiusd.conf"
    conf.write_text(re.sub(r"(?m)^(run_dir|logdir) = .*$", lambda m: f"{m[1]} = {run}", conf.read_text())
                    .replace("proxy_requests  = yes", "proxy_requests = no"))  # fmt: skip
    run.mkdir()
    for path in [raddb, run, *raddb.rglob("*"), *run.rglob("*")]:
        shutil.chown(path, SERVER_USER, SERVER_USER)
    ctx.workdir.chmod(0o711)
    return raddb


def _request(rng: random.Random, sent: int) -> tuple[str, str]:
    """One request's attributes and kind (auth or acct)."""
    user = rng.choice(list(USERS))
    if sent % 3 == 0:
        kind = rng.choice(["Start", "Interim-Update", "Stop"])
        return "acct", (f"User-Name = {user}\nAcct-Status-Type = {kind}\nAcct-Session-Id = \"{sent:08x}\"\n"
                        f"NAS-Identifier = wlc-1\nCalled-Station-Id = \"AP-{rng.randrange(12)}:Lab\"\n"
                        f"Acct-Input-Octets = {rng.randrange(10**7)}\nAcct-Output-Octets = {rng.randrange(10**8)}\n")
    password = USERS[user] if rng.random() < 0.9 else "wrong-password"
    return "auth", (f"User-Name = {user}\nUser-Password = {password}\nNAS-Identifier = wlc-1\n"
                    f"Called-Station-Id = \"AP-{rng.randrange(12)}:Lab\"\nNAS-Port-Type = Wireless-802.11\n")


@on_both_ports("radius", "RADIUS Wi-Fi logins and accounting (FreeRADIUS, radclient)",
               requires=("freeradius", "radclient", "ip"))  # fmt: skip
def radius(ctx: LabContext, variant: Variant) -> None:
    server_ip, client_ip = ctx.host(10), ctx.host(20)
    kinds = (socket.SOCK_DGRAM,)
    auth, acct = service_port(ctx, server_ip, 1812, variant, kinds), service_port(ctx, server_ip, 1813, variant, kinds)
    raddb = _raddb(ctx, server_ip, auth, acct)
    server_log = start_daemon(ctx, "freeradius", ["freeradius", "-X", "-d", str(raddb)], server_ip, None)
    wait_udp_bound(ctx, server_ip, auth, timeout=20)
    rng = random.Random(ctx.index)
    request = ctx.workdir / "request"
    with routed_source(ctx, server_ip, client_ip):
        for sent in ctx.rounds():
            kind, attributes = _request(rng, sent)
            request.write_text(attributes)
            port = acct if kind == "acct" else auth
            done = ctx.supervisor.run(["radclient", "-r", "1", "-f", str(request), f"{server_ip}:{port}", kind, SECRET],
                                      timeout=10)  # fmt: skip
            if done.returncode and b"Access-Reject" not in done.stdout:  # a wrong password is rejected, on purpose
                said = done.stdout.decode(errors="replace").strip().splitlines()[-1:] or [f"exit {done.returncode}"]
                raise LabError(f"radius: radclient failed: {said[0]}")
            ctx.pace(sent * 20)
    for cip, cport, sport in RECEIVED.findall(server_log.read_text(errors="replace")):
        if cip == client_ip:
            ctx.label(PROTO_UDP, (cip, int(cport)), (server_ip, int(sport)), "Radius")  # nDPI 4.2's spelling
