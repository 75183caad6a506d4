"""IMAP and POP3: a dovecot of the lab's own (its config, run and state
folders and maildirs in the workdir, plaintext logins without TLS) and
mail clients (Python's imaplib and poplib over sockets bound to the client
address): IMAP sessions that file new mail, search, fetch and flag it, and
POP3 sessions that list and download it. Labelled ``IMAP`` and ``POP3``."""

from __future__ import annotations

import imaplib
import poplib
import random
import socket
from email.message import EmailMessage

from netgptd.decode.packet import PROTO_TCP
from netgptd.lab.scenario import LabContext
from netgptd.lab.scenarios._servers import Variant, on_both_ports, owned_dir, service_port, start_daemon

USERS = {"alice": "lab-mail-alice", "bob": "lab-mail-bob"}
MAIL_USER = "mail"  # the maildirs' owner (Debian's uid 8)
DOVECOT_CONFIG = """\
base_dir = {work}/dovecot-run
state_dir = {work}/dovecot-state
log_path = /dev/stderr
protocols = imap pop3
listen = {ip}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 1
mail_location = maildir:{mail}/%u
pop3_uidl_format = %08Xu%08Xv
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {work}/dovecot-users
}}
userdb {{
  driver = static
  args = uid={mail_user} gid={mail_user} home={mail}/%u
}}
service imap-login {{
  inet_listener imap {{
    port = {imap}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {pop3}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
"""
SUBJECTS = ["Quarterly numbers", "Re: on-call swap", "Build 4411 failed", "Lunch friday?", "Contract draft v3"]


class _IMAP(imaplib.IMAP4):
    """imaplib's client on a socket bound to ``source``."""

    def __init__(self, host: str, port: int, source: str) -> None:
        self._source = source
        super().__init__(host, port, timeout=5)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout, source_address=(self._source, 0))


class _POP3(poplib.POP3):
    """poplib's client on a socket bound to ``source``."""

    def __init__(self, host: str, port: int, source: str) -> None:
        self._source = source
        super().__init__(host, port, timeout=5)

    def _create_socket(self, timeout: float) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout, source_address=(self._source, 0))


def _message(rng: random.Random, to: str) -> bytes:
    message = EmailMessage()
    message["From"] = f"{rng.choice(['carol', 'dave', 'erin'])}@netgptd.lab"
    message["To"] = f"{to}@netgptd.lab"
    message["Subject"] = rng.choice(SUBJECTS)
    message.set_content("\n".join(f"Paragraph {i}: " + " ".join(rng.choices(SUBJECTS, k=6)) for i in range(12)))
    return bytes(message)


def _imap_session(server: tuple[str, int], client_ip: str, user: str, rng: random.Random) -> tuple[str, int]:
    """File two messages, search, fetch and flag; returns the client's address."""
    with _IMAP(*server, client_ip) as imap:
        client = imap.sock.getsockname()
        imap.login(user, USERS[user])
        for _ in range(2):
            imap.append("INBOX", None, None, _message(rng, user))
        imap.select("INBOX")
        _, found = imap.search(None, "UNSEEN")
        for number in found[0].split()[-3:]:
            imap.fetch(number, "(FLAGS BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)])")
            imap.fetch(number, "(BODY[TEXT])")
            imap.store(number, "+FLAGS", "\\Seen")
        imap.close()
        imap.logout()
    return client


def _pop3_session(server: tuple[str, int], client_ip: str, user: str) -> tuple[str, int]:
    """List the mailbox and download its newest messages; returns the client's address."""
    pop = _POP3(*server, client_ip)
    try:
        pop.user(user)
        pop.pass_(USERS[user])
        count, _ = pop.stat()
        pop.uidl()
        for number in range(max(1, count - 2), count + 1) if count else ():
            pop.retr(number)
        return pop.sock.getsockname()
    finally:
        pop.quit()


@on_both_ports("mailbox", "IMAP and POP3 mail reading (dovecot, imaplib and poplib clients)",
               requires=("dovecot",))  # fmt: skip
def mailbox(ctx: LabContext, variant: Variant) -> None:
    server_ip, client_ip = ctx.host(10), ctx.host(20)
    imap = (server_ip, service_port(ctx, server_ip, 143, variant))
    pop3 = (server_ip, service_port(ctx, server_ip, 110, variant))
    mail = owned_dir(ctx, "mail", MAIL_USER)
    (ctx.workdir / "dovecot-users").write_text("".join(f"{u}:{{PLAIN}}{p}\n" for u, p in USERS.items()))
    config = ctx.workdir / "dovecot.conf"
    config.write_text(DOVECOT_CONFIG.format(work=ctx.workdir, ip=server_ip, mail=mail, mail_user=MAIL_USER,
                                            imap=imap[1], pop3=pop3[1]))  # fmt: skip
    start_daemon(ctx, "dovecot", ["dovecot", "-F", "-c", str(config)], *imap)
    ctx.wait_listening(*pop3)
    rng = random.Random(ctx.index)
    for sent in ctx.rounds():
        user = list(USERS)[sent % len(USERS)]
        ctx.label(PROTO_TCP, _imap_session(imap, client_ip, user, rng), imap, "IMAP")
        ctx.label(PROTO_TCP, _pop3_session(pop3, client_ip, user), pop3, "POP3")
        ctx.pace(sent * 20)
