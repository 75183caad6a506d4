"""rsync: an rsync daemon module (rsync --daemon per connection in inetd
mode, see InetdServer; a password-protected module written as nobody) and
rsync clients bound to the client address that back up a folder whose
files change between runs, list the module and restore a file from it."""

from __future__ import annotations

import random

from netgptd.lab.scenario import LabContext
from netgptd.lab.scenarios._attack_targets import label_peers, stop_servers
from netgptd.lab.scenarios._servers import (InetdServer, Variant, on_both_ports, owned_dir, run_tool,
                                            serve_in_thread, service_port)  # fmt: skip

USER, PASSWORD, MODULE = "backup", "lab-rsync-password", "backup"
RSYNCD_CONFIG = """\
use chroot = no
[{module}]
  path = {path}
  read only = false
  uid = nobody
  gid = nogroup
  auth users = {user}
  secrets file = {secrets}
"""
FILES = ["notes.txt", "budget.csv", "photos/cat.raw", "photos/dog.raw", "src/app.py"]


def _change(ctx: LabContext, rng: random.Random, round_: int) -> None:
    """Edit a file or two of the folder that is backed up."""
    for name in rng.sample(FILES, rng.randrange(1, 3)):
        path = ctx.workdir / "home" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith(".raw"):
            data = rng.randbytes(rng.randrange(1_000, 40_000))
        else:
            data = "".join(f"{round_},{rng.random():.6f}\n" for _ in range(rng.randrange(10, 300))).encode()
        with open(path, "ab") as f:
            f.write(data)


@on_both_ports("rsync", "rsync backups, listings and restores against an rsync daemon (rsync)", requires=("rsync",))
def rsync(ctx: LabContext, variant: Variant) -> None:
    server_ip, client_ip = ctx.host(10), ctx.host(20)
    port = service_port(ctx, server_ip, 873, variant)
    secrets, module = ctx.workdir / "rsyncd.secrets", owned_dir(ctx, "module", "nobody")
    secrets.write_text(f"{USER}:{PASSWORD}\n")
    secrets.chmod(0o600)
    config = ctx.workdir / "rsyncd.conf"
    config.write_text(RSYNCD_CONFIG.format(module=MODULE, path=module, user=USER, secrets=secrets))
    server = serve_in_thread(InetdServer((server_ip, port), ctx, ["rsync", "--daemon", f"--config={config}"]))
    url = f"rsync://{USER}@{server_ip}:{port}/{MODULE}/"
    client = ["rsync", f"--address={client_ip}"]
    env = {"RSYNC_PASSWORD": PASSWORD, "PATH": "/usr/bin:/bin"}
    rng = random.Random(ctx.index)
    home = ctx.workdir / "home"
    try:
        ctx.wait_listening(server_ip, port)
        for sent in ctx.rounds():
            _change(ctx, rng, sent)
            run_tool(ctx, [*client, "-a", "--delete", f"{home}/", url], timeout=20, env=env)
            if sent % 3 == 0:
                run_tool(ctx, [*client, "-r", "--list-only", url], timeout=20, env=env)
                backed_up = sorted(str(p.relative_to(home)) for p in home.rglob("*") if p.is_file())
                run_tool(ctx, [*client, "-a", f"{url}{rng.choice(backed_up)}", str(ctx.workdir / "restored")],
                         timeout=20, env=env)  # fmt: skip
            ctx.pace(sent * 40)
    finally:
        stop_servers([server])
    label_peers(ctx, server.peers, client_ip, (server_ip, port), "RSYNC")
