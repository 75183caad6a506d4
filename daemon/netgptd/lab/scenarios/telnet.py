"""Telnet: inetutils telnetd, started per connection as inetd would (see
InetdServer), logging operators in through a login program of the lab's own
(a router-like banner, then a shell as nobody), and inetutils telnet
clients bound to the client address, typing their commands as people do, a
line at a time."""

from __future__ import annotations

import subprocess
import time
from typing import Any

from netgptd.lab.scenario import LabContext
from netgptd.lab.scenarios._attack_targets import label_peers, stop_servers
from netgptd.lab.scenarios._servers import InetdServer, Variant, on_both_ports, serve_in_thread, service_port

USER, PASSWORD = "operator", "lab-telnet-password"
LOGIN = f"""#!/bin/sh
printf 'netgptd lab edge router\\n\\nlogin: '
read -r user
printf 'Password: '
stty -echo; read -r password; stty echo; echo
if [ "$user" = {USER} ] && [ "$password" = {PASSWORD} ]; then
  exec setpriv --reuid=nobody --regid=nogroup --clear-groups env -i PS1='edge$ ' PATH=/usr/bin:/bin /bin/sh -i
fi
echo 'Login incorrect'
"""
TYPED = [USER, PASSWORD, "uname -a", "uptime", "cat /proc/loadavg", "ls /etc | head -20", "date -u", "exit"]
KEYSTROKE_PAUSE_S = 0.15


def _type(ctx: LabContext, argv: list[str]) -> None:
    """Run the telnet client, typing TYPED a line at a time; the server ends
    the connection at ``exit``."""
    client: Any = ctx.supervisor.start(argv, stdin=subprocess.PIPE)
    try:
        for line in TYPED:
            time.sleep(KEYSTROKE_PAUSE_S)
            client.stdin.write(line.encode() + b"\n")
            client.stdin.flush()
        client.wait(5)
    except (subprocess.TimeoutExpired, BrokenPipeError):
        pass  # the session is in the capture however it ended; the supervisor ends the client
    finally:
        ctx.supervisor.stop(client)
        client.stdin.close()


@on_both_ports("telnet", "Telnet logins running shell commands (inetutils telnetd and telnet)",
               requires=("telnetd", "telnet", "setpriv"))  # fmt: skip
def telnet(ctx: LabContext, variant: Variant) -> None:
    server_ip, client_ip = ctx.host(10), ctx.host(20)
    port = service_port(ctx, server_ip, 23, variant)
    login = ctx.workdir / "login"
    login.write_text(LOGIN)
    login.chmod(0o755)
    server = serve_in_thread(InetdServer((server_ip, port), ctx, ["telnetd", "-h", "-E", str(login)]))
    try:
        ctx.wait_listening(server_ip, port)
        for _ in ctx.rounds():
            _type(ctx, ["telnet", "-b", client_ip, server_ip, str(port)])
    finally:
        stop_servers([server])
    label_peers(ctx, server.peers, client_ip, (server_ip, port), "Telnet")
