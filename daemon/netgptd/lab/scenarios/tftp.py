"""TFTP: tftpd-hpa serving a boot folder of the lab's own (uploads allowed)
and tftp-hpa clients, as network boots and config backups do: firmware and
config downloads, config uploads. A transfer is two flows: the request to
the server's port, then the blocks between the client's port and a port
the server picks for the transfer. Both ends' ports are pinned (-R on each
side), so both flows are known exactly; tftp binds no address, so the
client's comes from a route (see routed_source)."""

from __future__ import annotations

import random
import socket

from netgptd.decode.packet import PROTO_UDP
from netgptd.lab.scenario import LabContext
from netgptd.lab.scenarios._servers import (Variant, on_both_ports, owned_dir, routed_source, run_tool,
                                            service_port, start_daemon, wait_udp_bound)  # fmt: skip

BOOT_FILES = {"pxelinux.0": 42_000, "firmware-v2.bin": 180_000, "switch-12.cfg": 6_000, "phone-2231.cfg": 2_500}


@on_both_ports("tftp", "TFTP boot-file downloads and config uploads (tftpd-hpa, tftp-hpa)",
               requires=("in.tftpd", "tftp", "ip"))  # fmt: skip
def tftp(ctx: LabContext, variant: Variant) -> None:
    server_ip, client_ip = ctx.host(10), ctx.host(20)
    port = service_port(ctx, server_ip, 69, variant, kinds=(socket.SOCK_DGRAM,))
    transfer_port = ctx.free_port(server_ip, socket.SOCK_DGRAM)
    rng = random.Random(ctx.index)
    root = owned_dir(ctx, "tftpboot", "nobody")
    for name, size in BOOT_FILES.items():
        (root / name).write_bytes(rng.randbytes(size))
        (root / name).chmod(0o644)
    argv = ["in.tftpd", "-L", "-a", f"{server_ip}:{port}", "-s", str(root), "-c", "-u", "nobody",
            "-R", f"{transfer_port}:{transfer_port}"]  # fmt: skip
    start_daemon(ctx, "tftpd", argv, server_ip, None)
    wait_udp_bound(ctx, server_ip, port)
    local = ctx.workdir / "client"
    local.mkdir()
    with routed_source(ctx, server_ip, client_ip):
        for sent in ctx.rounds():
            cport = ctx.free_port(client_ip, socket.SOCK_DGRAM)
            if sent % 3:
                command = f"get {rng.choice(list(BOOT_FILES))}"
            else:
                config = local / f"running-{sent}.cfg"
                mtus = (rng.choice([1500, 9000]) for _ in range(48))
                config.write_text("".join(f"interface ge-0/0/{i}\n  mtu {mtu}\n" for i, mtu in enumerate(mtus)))
                command = f"put {config.name} backup-{sent}.cfg"
            run_tool(ctx, ["tftp", "-m", "octet", "-R", f"{cport}:{cport}", server_ip, str(port),
                           "-c", *command.split()], timeout=20, cwd=local)  # fmt: skip
            ctx.label(PROTO_UDP, (client_ip, cport), (server_ip, port), "TFTP")
            ctx.label(PROTO_UDP, (client_ip, cport), (server_ip, transfer_port), "TFTP")
            ctx.pace(sent * 40)
