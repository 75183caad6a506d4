"""SSH password guessing: hydra against OpenSSH's sshd, which takes password
logins but allows no user, so no guess can succeed. The client ports come
from sshd's own log (LogLevel VERBOSE names each connection)."""

from __future__ import annotations

import shutil

from netgptd.lab.scenario import LabContext, scenario
from netgptd.lab.scenarios._attack_targets import ATTACKER, VICTIM, hydra, label_peers
from netgptd.lab.scenarios._servers import run_tool, start_daemon, well_known_port
from netgptd.lab.scenarios.ssh import CONNECTION, PRIVSEP_DIR

SSHD_CONFIG = """\
ListenAddress {ip}:{port}
HostKey {workdir}/ssh_host_ed25519_key
PidFile {workdir}/sshd.pid
UsePAM no
PasswordAuthentication yes
KbdInteractiveAuthentication no
PermitRootLogin no
AllowUsers netgptd-lab-nobody
MaxStartups 100
LoginGraceTime 10
LogLevel VERBOSE
"""


@scenario("bruteforce-ssh", "attack", "SSH password guessing (hydra) against OpenSSH sshd",
          requires=("hydra", "sshd", "ssh-keygen", "ip"))  # fmt: skip
def bruteforce_ssh(ctx: LabContext) -> None:
    victim_ip, attacker_ip = ctx.host(VICTIM), ctx.host(ATTACKER)
    port = well_known_port(ctx, victim_ip, 22)
    run_tool(ctx, ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(ctx.workdir / "ssh_host_ed25519_key")])
    config = ctx.workdir / "sshd_config"
    config.write_text(SSHD_CONFIG.format(ip=victim_ip, port=port, workdir=ctx.workdir))
    PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
    sshd_log = start_daemon(ctx, "sshd", [str(shutil.which("sshd")), "-D", "-e", "-f", str(config)], victim_ip, port)
    hydra(ctx, (victim_ip, port), ["ssh"])
    peers = [(cip, int(cport)) for cip, cport, _, _ in CONNECTION.findall(sshd_log.read_text(errors="replace"))]
    label_peers(ctx, peers, attacker_ip, (victim_ip, port), "SSH", "bruteforce")
