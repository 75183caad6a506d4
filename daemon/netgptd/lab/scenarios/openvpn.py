"""OpenVPN: point-to-point OpenVPN sessions over UDP in TLS mode, both ends
real openvpn processes with a null device (--dev null: no tunnel interface,
nothing routed), certificates from a lab CA made with openssl. Each session
starts a server and a client, lets them finish the TLS handshake and
exchange keep-alive pings for a moment, then ends both. Both ends' ports
are given (--lport), so each session's flow is known exactly."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from netgptd.decode.packet import PROTO_UDP
from netgptd.lab.safety import LabError, wait_until
from netgptd.lab.scenario import LabContext
from netgptd.lab.scenarios._servers import Variant, on_both_ports, run_tool, service_port, wait_udp_bound

HANDSHAKE_TIMEOUT_S = 10.0
CONNECTED = "Initialization Sequence Completed"
EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def _pki(ctx: LabContext) -> dict[str, Path]:
    """A CA and a server and client certificate it signed (key usages as
    --remote-cert-tls wants them); paths by name."""
    pki = {name: ctx.workdir / name for name in ("ca.crt", "ca.key")}
    run_tool(ctx, ["openssl", "req", "-x509", *EC, "-days", "2", "-subj", "/CN=netgptd lab CA",
                   "-keyout", str(pki["ca.key"]), "-out", str(pki["ca.crt"])])  # fmt: skip
    for role, usage in (("server", "serverAuth"), ("client", "clientAuth")):
        key, csr, crt, ext = (ctx.workdir / f"{role}.{kind}" for kind in ("key", "csr", "crt", "ext"))
        ext.write_text(f"extendedKeyUsage={usage}\nkeyUsage=digitalSignature,keyAgreement\n")
        run_tool(ctx, ["openssl", "req", *EC, "-subj", f"/CN={role}.netgptd.lab", "-keyout", str(key),
                       "-out", str(csr)])  # fmt: skip
        run_tool(ctx, ["openssl", "x509", "-req", "-in", str(csr), "-CA", str(pki["ca.crt"]),
                       "-CAkey", str(pki["ca.key"]), "-CAcreateserial", "-days", "2", "-extfile", str(ext),
                       "-out", str(crt)])  # fmt: skip
        pki[f"{role}.key"], pki[f"{role}.crt"] = key, crt
    return pki


def _session(ctx: LabContext, pki: dict[str, Path], server: tuple[str, int], client: tuple[str, int],
             linger: float) -> None:  # fmt: skip
    """One server and one client, from start to a completed handshake plus ``linger`` seconds of pings."""
    common = ["openvpn", "--dev", "null", "--proto", "udp", "--ping", "1", "--verb", "3", "--ca", str(pki["ca.crt"])]
    logs = {role: ctx.workdir / f"openvpn-{role}.log" for role in ("server", "client")}
    argvs = {
        "server": [*common, "--local", server[0], "--lport", str(server[1]), "--remote", client[0],
                   "--rport", str(client[1]), "--tls-server", "--dh", "none",
                   "--cert", str(pki["server.crt"]), "--key", str(pki["server.key"])],
        "client": [*common, "--local", client[0], "--lport", str(client[1]), "--remote", server[0],
                   "--rport", str(server[1]), "--tls-client", "--remote-cert-tls", "server",
                   "--cert", str(pki["client.crt"]), "--key", str(pki["client.key"])],
    }  # fmt: skip
    processes = []
    try:
        for role in ("server", "client"):
            with open(logs[role], "wb") as log_file:
                processes.append(ctx.supervisor.start(argvs[role], stdout=log_file))
            if role == "server":
                wait_udp_bound(ctx, *server)  # or the client's first packet meets a closed port
        if not wait_until(lambda: CONNECTED in logs["client"].read_text(errors="replace"), HANDSHAKE_TIMEOUT_S):
            said = logs["client"].read_text(errors="replace").strip().splitlines()[-1:] or ["nothing"]
            raise LabError(f"openvpn: no session within {HANDSHAKE_TIMEOUT_S:g} s (the client said: {said[0]})")
        time.sleep(linger)
    finally:
        for process in reversed(processes):
            ctx.supervisor.stop(process)


@on_both_ports("openvpn", "OpenVPN point-to-point sessions over UDP, TLS mode, null device (openvpn)",
               requires=("openvpn", "openssl"))  # fmt: skip
def openvpn(ctx: LabContext, variant: Variant) -> None:
    server_ip, client_ip = ctx.host(10), ctx.host(20)
    server = (server_ip, service_port(ctx, server_ip, 1194, variant, kinds=(socket.SOCK_DGRAM,)))
    pki = _pki(ctx)
    for sent in ctx.rounds():
        client = (client_ip, ctx.free_port(client_ip, socket.SOCK_DGRAM))
        _session(ctx, pki, server, client, linger=min(2.0, ctx.remaining))
        ctx.label(PROTO_UDP, client, server, "OpenVPN")
