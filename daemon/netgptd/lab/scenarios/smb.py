"""SMB: a Samba smbd of the lab's own (smb.conf, state and a share in the
workdir, one Samba account) and smbclient sessions that log in (NTLMSSP)
and put, list, get and delete office files over SMB 3. smbclient binds no
address, so the client's comes from a route (see routed_source); the
client ports come from smbd's log of each login."""

from __future__ import annotations

import random
import re

from netgptd.decode.packet import PROTO_TCP
from netgptd.lab.scenario import LabContext
from netgptd.lab.scenarios._servers import (Variant, on_both_ports, owned_dir, routed_source, run_tool,
                                            service_port, start_daemon)  # fmt: skip

USER, PASSWORD = "nobody", "lab-smb-password"  # a Samba account needs a Unix one: nobody owns the share
LOGGED_IN = re.compile(r"^Auth: .* remote host \[ipv4:([\d.]+):(\d+)\]", re.MULTILINE)  # log level 3
FOLDERS = ("lock", "state", "cache", "private", "pid", "ncalrpc", "binddns")
# interfaces: the address alone is no interface of this host (smbd would bind
# nothing); given with lo's /8, smbd takes it as an address of lo and binds it.
SMB_CONFIG = """\
[global]
  server role = standalone server
  workgroup = NETGPTDLAB
  netbios name = LABFILES
  interfaces = {ip}/8
  bind interfaces only = yes
  smb ports = {port}
  disable netbios = yes
  server min protocol = SMB2_10
  client min protocol = SMB2_10
  passdb backend = tdbsam:{work}/private/passdb.tdb
  lock directory = {work}/lock
  state directory = {work}/state
  cache directory = {work}/cache
  private dir = {work}/private
  pid directory = {work}/pid
  ncalrpc dir = {work}/ncalrpc
  binddns dir = {work}/binddns
  log level = 3
  load printers = no
  printcap name = /dev/null
  disable spoolss = yes
  usershare max shares = 0
[files]
  path = {share}
  read only = no
  valid users = {user}
"""


@on_both_ports("smb", "SMB 3 file sharing with NTLM logins (smbd, smbclient)",
               requires=("smbd", "smbclient", "pdbedit", "ip"))  # fmt: skip
def smb(ctx: LabContext, variant: Variant) -> None:
    server_ip, client_ip = ctx.host(10), ctx.host(20)
    port = service_port(ctx, server_ip, 445, variant)
    for folder in FOLDERS:
        (ctx.workdir / folder).mkdir()
    share = owned_dir(ctx, "share", USER)
    config = ctx.workdir / "smb.conf"
    config.write_text(SMB_CONFIG.format(ip=server_ip, port=port, work=ctx.workdir, share=share, user=USER))
    password_twice = ctx.workdir / "password"
    password_twice.write_text(f"{PASSWORD}\n{PASSWORD}\n")
    with open(password_twice, "rb") as stdin:
        run_tool(ctx, ["pdbedit", "-s", str(config), "-a", "-u", USER, "-t"], timeout=30, stdin=stdin)
    argv = ["smbd", "--foreground", "--no-process-group", "--debug-stdout", "-s", str(config)]
    smbd_log = start_daemon(ctx, "smbd", argv, server_ip, port)
    rng = random.Random(ctx.index)
    client = ["smbclient", f"//{server_ip}/files", "-p", str(port), "-s", str(config), "-U", f"{USER}%{PASSWORD}",
              "-m", "SMB3", "-c"]  # fmt: skip
    with routed_source(ctx, server_ip, client_ip):
        for sent in ctx.rounds():
            name = f"report-{rng.randrange(100):02d}.txt"
            local = ctx.workdir / name
            local.write_text("\n".join(f"row {i}: {rng.random():.6f}" for i in range(rng.randrange(50, 400))))
            commands = f"lcd {ctx.workdir}; put {name}; ls; get {name} {name}.back; allinfo {name}"
            if sent % 4 == 0:
                commands += f"; del {name}"
            run_tool(ctx, [*client, commands], timeout=15)
            ctx.pace(sent * 20)
    for cip, cport in LOGGED_IN.findall(smbd_log.read_text(errors="replace")):
        if cip == client_ip:
            ctx.label(PROTO_TCP, (cip, int(cport)), (server_ip, port), "SMBv23")
