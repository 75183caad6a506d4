"""SMTP: an aiosmtpd mail server accepting mail from smtplib clients that each
send a few messages per session (EHLO, MAIL, RCPT, DATA, QUIT)."""

from __future__ import annotations

import random
import smtplib
from email.message import EmailMessage
from functools import partial
from typing import TYPE_CHECKING

from netgptd.decode.packet import PROTO_TCP
from netgptd.lab.scenario import LabContext, scenario
from netgptd.lab.scenarios._servers import LoopThread, well_known_port

if TYPE_CHECKING:
    from aiosmtpd.smtp import SMTP, Envelope, Session

DOMAIN = "netgptd.lab"
PEOPLE = ["alice", "bob", "carol", "dave", "erin", "frank"]
SUBJECTS = ["Weekly report", "Re: build failure", "Lunch?", "Invoice 2231", "Meeting notes", "Re: Re: access request"]


class _Mailbox:
    """aiosmtpd handler: answers every message as queued, then drops it."""

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802 (its name)
        return "250 2.0.0 Ok: queued"


def _message(rng: random.Random) -> EmailMessage:
    sender, *recipients = rng.sample(PEOPLE, rng.randrange(2, 4))
    message = EmailMessage()
    message["From"] = f"{sender}@{DOMAIN}"
    message["To"] = ", ".join(f"{r}@{DOMAIN}" for r in recipients)
    message["Subject"] = rng.choice(SUBJECTS)
    message.set_content("\n".join(f"Line {i}: " + " ".join(rng.choices(PEOPLE + SUBJECTS, k=8)) for i in range(20)))
    return message


@scenario("smtp", "benign", "SMTP sessions delivering mail (aiosmtpd server, smtplib clients)", python=("aiosmtpd",))
def smtp(ctx: LabContext) -> None:
    from aiosmtpd.smtp import SMTP

    server_ip, client_ip = ctx.host(10), ctx.host(20)
    port = well_known_port(ctx, server_ip, 25)
    rng = random.Random(ctx.index)
    loop = LoopThread()
    try:
        protocol = partial(SMTP, _Mailbox(), hostname=f"mail.{DOMAIN}", loop=loop.loop)
        server = loop.run(loop.loop.create_server(protocol, server_ip, port))
        try:
            ctx.wait_listening(server_ip, port)
            sent = 0
            while ctx.running():
                cport = ctx.free_port(client_ip)
                with smtplib.SMTP(server_ip, port, local_hostname=f"ws20.{DOMAIN}", timeout=5,
                                  source_address=(client_ip, cport)) as client:  # fmt: skip
                    for _ in range(rng.randrange(1, 4)):
                        client.send_message(_message(rng))
                        sent += 1
                ctx.label(PROTO_TCP, (client_ip, cport), (server_ip, port), "SMTP")
                ctx.pace(sent * 40)
        finally:
            server.close()
            loop.run(server.wait_closed())
    finally:
        loop.close()
