"""LDAP: an OpenLDAP slapd of the lab's own (slapd.conf and an mdb database
in the workdir) holding a small staff directory, and OpenLDAP's clients:
ldapadd fills it, then ldapsearch, ldapwhoami and ldapmodify sessions look
people up, log in as them and update them, as an intranet would. The tools
bind no address, so the client's comes from a route (see routed_source);
the client ports come from slapd's connection log."""

from __future__ import annotations

import random
import re

from netgptd.decode.packet import PROTO_TCP
from netgptd.lab.scenario import LabContext
from netgptd.lab.scenarios._servers import (Variant, on_both_ports, routed_source, run_tool, service_port,
                                            start_daemon)  # fmt: skip

BASE = "dc=netgptd,dc=lab"
ADMIN, ADMIN_PASSWORD = f"cn=admin,{BASE}", "lab-ldap-password"
PEOPLE = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"]
ACCEPTED = re.compile(r"ACCEPT from IP=([\d.]+):(\d+) ")
SLAPD_CONFIG = """\
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
pidfile {work}/slapd.pid
argsfile {work}/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
database mdb
suffix "{base}"
rootdn "{admin}"
rootpw {password}
directory {work}/ldap
maxsize 16777216
access to attrs=userPassword by self write by anonymous auth by * none
access to * by * read
"""


def _directory() -> str:
    """The base, the people unit and one inetOrgPerson per name, as LDIF."""
    entries = [f"dn: {BASE}\nobjectClass: dcObject\nobjectClass: organization\no: netgptd lab\ndc: netgptd\n",
               f"dn: ou=people,{BASE}\nobjectClass: organizationalUnit\nou: people\n"]  # fmt: skip
    for i, name in enumerate(PEOPLE):
        entries.append(f"dn: uid={name},ou=people,{BASE}\nobjectClass: inetOrgPerson\nuid: {name}\n"
                       f"cn: {name.title()} Example\nsn: Example\nmail: {name}@netgptd.lab\n"
                       f"telephoneNumber: +1 555 01{i:02d}\nuserPassword: {name}-password\n")  # fmt: skip
    return "\n".join(entries)


def _person(name: str) -> str:
    return f"uid={name},ou=people,{BASE}"


@on_both_ports("ldap", "LDAP directory look-ups, logins and updates (slapd, ldapsearch/ldapwhoami/ldapmodify)",
               requires=("slapd", "ldapadd", "ldapsearch", "ldapwhoami", "ldapmodify", "ip"))  # fmt: skip
def ldap(ctx: LabContext, variant: Variant) -> None:
    server_ip, client_ip = ctx.host(10), ctx.host(20)
    port = service_port(ctx, server_ip, 389, variant)
    (ctx.workdir / "ldap").mkdir()
    config = ctx.workdir / "slapd.conf"
    config.write_text(SLAPD_CONFIG.format(work=ctx.workdir, base=BASE, admin=ADMIN, password=ADMIN_PASSWORD))
    argv = ["slapd", "-d", "stats", "-f", str(config), "-h", f"ldap://{server_ip}:{port}/"]
    slapd_log = start_daemon(ctx, "slapd", argv, server_ip, port)
    uri = ["-x", "-H", f"ldap://{server_ip}:{port}/"]
    admin = [*uri, "-D", ADMIN, "-w", ADMIN_PASSWORD]
    ldif = ctx.workdir / "people.ldif"
    ldif.write_text(_directory())
    rng = random.Random(ctx.index)
    with routed_source(ctx, server_ip, client_ip):
        run_tool(ctx, ["ldapadd", *admin, "-f", str(ldif)], timeout=10)
        for sent in ctx.rounds():
            name = rng.choice(PEOPLE)
            run_tool(ctx, ["ldapsearch", *uri, "-b", f"ou=people,{BASE}", f"(|(uid={name})(mail={name}*))",
                           "cn", "mail", "telephoneNumber"], timeout=10)  # fmt: skip
            run_tool(ctx, ["ldapwhoami", *uri, "-D", _person(name), "-w", f"{name}-password"], timeout=10)
            if sent % 3 == 0:
                change = f"dn: {_person(name)}\nchangetype: modify\nreplace: telephoneNumber\n" \
                         f"telephoneNumber: +1 555 {rng.randrange(10000):04d}\n"  # fmt: skip
                ldif.write_text(change)
                run_tool(ctx, ["ldapmodify", *admin, "-f", str(ldif)], timeout=10)
            ctx.pace(sent * 20)
    for cip, cport in ACCEPTED.findall(slapd_log.read_text(errors="replace")):
        if cip == client_ip:
            ctx.label(PROTO_TCP, (cip, int(cport)), (server_ip, port), "LDAP")

