"""SSH: OpenSSH's sshd on the lab address with keys made at run time, and the
ssh client logging in as root with a key to run short commands. The client
ports come from sshd's own log (LogLevel VERBOSE names each connection)."""

from __future__ import annotations

import itertools
import re
import shutil
from pathlib import Path

from netgptd.decode.packet import PROTO_TCP
from netgptd.lab.scenario import LabContext, scenario
from netgptd.lab.scenarios._servers import run_tool, start_daemon, well_known_port

COMMANDS = ["echo netgptd-lab", "uname -a", "id", "hostname; date -u", "uptime"]
PRIVSEP_DIR = Path("/run/sshd")  # sshd refuses to start without it; systemd makes it at boot, containers may not
CONNECTION = re.compile(r"Connection from (\S+) port (\d+) on (\S+) port (\d+)")

SSHD_CONFIG = """\
ListenAddress {ip}:{port}
HostKey {workdir}/ssh_host_ed25519_key
AuthorizedKeysFile {workdir}/authorized_keys
PidFile {workdir}/sshd.pid
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
LogLevel VERBOSE
"""


def _keys(ctx: LabContext) -> Path:
    """Make the host key and the client key, authorise the client key; return the client key."""
    run_tool(ctx, ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(ctx.workdir / "ssh_host_ed25519_key")])
    client_key = ctx.workdir / "id_ed25519"
    run_tool(ctx, ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "netgptd-lab", "-f", str(client_key)])
    shutil.copyfile(client_key.with_suffix(".pub"), ctx.workdir / "authorized_keys")
    return client_key


@scenario("ssh", "benign", "SSH logins with a key running short commands (OpenSSH sshd and ssh)",
          requires=("sshd", "ssh", "ssh-keygen"))  # fmt: skip
def ssh(ctx: LabContext) -> None:
    server_ip, client_ip = ctx.host(10), ctx.host(20)
    port = well_known_port(ctx, server_ip, 22)
    client_key = _keys(ctx)
    config = ctx.workdir / "sshd_config"
    config.write_text(SSHD_CONFIG.format(ip=server_ip, port=port, workdir=ctx.workdir))
    PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
    sshd_log = start_daemon(ctx, "sshd", [str(shutil.which("sshd")), "-D", "-e", "-f", str(config)], server_ip, port)
    client = ["ssh", "-F", "/dev/null", "-b", client_ip, "-p", str(port), "-i", str(client_key),
              "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
              "-o", "LogLevel=ERROR", f"root@{server_ip}"]  # fmt: skip
    for sent, command in enumerate(itertools.cycle(COMMANDS), start=1):
        if not ctx.running():
            break
        run_tool(ctx, [*client, command], timeout=10)
        ctx.pace(sent * 20)
    for cip, cport, sip, sport in CONNECTION.findall(sshd_log.read_text(errors="replace")):
        if cip == client_ip:
            ctx.label(PROTO_TCP, (cip, int(cport)), (sip, int(sport)), "SSH")
