"""Git: git daemon serving a bare repository over the git protocol (run per
connection in inetd mode, see InetdServer) and git clients that clone it,
ask for its refs and fetch new commits, while a developer keeps committing
to it locally. git binds no address, so the client's comes from a route (see
routed_source)."""

from __future__ import annotations

import random

from netgptd.lab.scenario import LabContext
from netgptd.lab.scenarios._attack_targets import label_peers, stop_servers
from netgptd.lab.scenarios._servers import (InetdServer, Variant, on_both_ports, routed_source, run_tool,
                                            serve_in_thread, service_port)  # fmt: skip

GIT_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent", "PATH": "/usr/bin:/bin",
           "GIT_AUTHOR_NAME": "Lab Dev", "GIT_AUTHOR_EMAIL": "dev@netgptd.lab",
           "GIT_COMMITTER_NAME": "Lab Dev", "GIT_COMMITTER_EMAIL": "dev@netgptd.lab"}  # fmt: skip
FILES = ["src/main.c", "src/net.c", "README.md", "docs/design.md", "Makefile"]


def _commit(ctx: LabContext, work: str, rng: random.Random, n: int) -> None:
    """One local commit changing a file or two, pushed to the served repository."""
    for name in rng.sample(FILES, rng.randrange(1, 3)):
        path = ctx.workdir / "dev" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as f:
            f.write("".join(f"/* change {n}.{i}: {rng.random():.8f} */\n" for i in range(rng.randrange(5, 60))))
    git = ["git", "-C", work]
    run_tool(ctx, [*git, "add", "-A"], env=GIT_ENV)
    run_tool(ctx, [*git, "commit", "-q", "-m", f"Change {n}"], env=GIT_ENV)
    run_tool(ctx, [*git, "push", "-q", "origin", "HEAD:main"], env=GIT_ENV)


@on_both_ports("git", "git clone, ls-remote and fetch over the git protocol (git daemon --inetd, git)",
               requires=("git", "ip"))  # fmt: skip
def git(ctx: LabContext, variant: Variant) -> None:
    server_ip, client_ip = ctx.host(10), ctx.host(20)
    port = service_port(ctx, server_ip, 9418, variant)
    served, dev = ctx.workdir / "served", str(ctx.workdir / "dev")
    run_tool(ctx, ["git", "init", "-q", "--bare", "-b", "main", str(served / "project.git")], env=GIT_ENV)
    run_tool(ctx, ["git", "clone", "-q", str(served / "project.git"), dev], env=GIT_ENV)
    rng = random.Random(ctx.index)
    for n in range(3):
        _commit(ctx, dev, rng, n)
    daemon = ["git", "daemon", "--inetd", f"--base-path={served}", "--export-all", str(served)]
    server = serve_in_thread(InetdServer((server_ip, port), ctx, daemon))
    url = f"git://{server_ip}:{port}/project.git"
    try:
        ctx.wait_listening(server_ip, port)
        with routed_source(ctx, server_ip, client_ip):
            clone = str(ctx.workdir / "clone")
            run_tool(ctx, ["git", "clone", "-q", url, clone], env=GIT_ENV)
            for sent in ctx.rounds():
                if sent % 3 == 0:
                    _commit(ctx, dev, rng, sent)
                    run_tool(ctx, ["git", "-C", clone, "fetch", "-q", "origin"], env=GIT_ENV)
                elif sent % 3 == 1:
                    run_tool(ctx, ["git", "ls-remote", url], env=GIT_ENV)
                else:
                    run_tool(ctx, ["git", "clone", "-q", "--depth", "1", url, f"{clone}-{sent}"], env=GIT_ENV)
                ctx.pace(sent * 40)
    finally:
        stop_servers([server])
    label_peers(ctx, server.peers, client_ip, (server_ip, port), "Git")
