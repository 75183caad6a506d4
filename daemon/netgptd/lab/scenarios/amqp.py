"""AMQP: a RabbitMQ node of the lab's own (its node name, ports, config,
database and Erlang cookie in the workdir, run as the rabbitmq user; the
host's own node is left alone) and librabbitmq's amqp-tools as an order
pipeline: a queue declared once, then shops publishing orders and workers
taking them. The tools bind no address, so the client's comes from a route
(see routed_source); the client ports come from RabbitMQ's connection log.
RabbitMQ takes seconds to boot: see BOOT_TIMEOUT_S."""

from __future__ import annotations

import json
import random
import re

from netgptd.decode.packet import PROTO_TCP
from netgptd.lab.scenario import LabContext
from netgptd.lab.scenarios._servers import (Variant, on_both_ports, owned_dir, routed_source, run_tool,
                                            service_port, start_daemon)  # fmt: skip

SERVER_USER, USER, PASSWORD, QUEUE = "rabbitmq", "lab", "lab-amqp-password", "orders"
RABBITMQ = "/usr/lib/rabbitmq/bin/rabbitmq-server"  # /usr/sbin's wrapper logs to /var/log and runs the host's node
BOOT_TIMEOUT_S = 60.0
ACCEPTED = re.compile(r"accepting AMQP connection \S+ \(([\d.]+):(\d+) -> ")
CONFIG = f"""\
default_user = {USER}
default_pass = {PASSWORD}
loopback_users = none
"""


@on_both_ports("amqp", "AMQP 0-9-1 order queue (a RabbitMQ node of its own, amqp-publish/amqp-get)",
               requires=(RABBITMQ, "amqp-declare-queue", "amqp-publish", "amqp-get", "ip"))  # fmt: skip
def amqp(ctx: LabContext, variant: Variant) -> None:
    server_ip, client_ip = ctx.host(10), ctx.host(20)
    port = service_port(ctx, server_ip, 5672, variant)
    home = owned_dir(ctx, "rabbitmq", SERVER_USER)
    (ctx.workdir / "rabbitmq.conf").write_text(CONFIG)
    (ctx.workdir / "enabled_plugins").write_text("[].\n")  # no management plugin (and its ports)
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin", "RABBITMQ_NODENAME": f"netgptd-lab-{ctx.index}@localhost",
           "RABBITMQ_NODE_IP_ADDRESS": server_ip, "RABBITMQ_NODE_PORT": str(port),
           "RABBITMQ_DIST_PORT": str(ctx.free_port(server_ip)), "RABBITMQ_MNESIA_BASE": str(home / "mnesia"),
           "RABBITMQ_LOG_BASE": str(home / "log"), "RABBITMQ_LOGS": "-", "RABBITMQ_PID_FILE": str(home / "pid"),
           "RABBITMQ_CONFIG_FILE": str(ctx.workdir / "rabbitmq"),
           "RABBITMQ_ENABLED_PLUGINS_FILE": str(ctx.workdir / "enabled_plugins")}  # fmt: skip
    server_log = start_daemon(ctx, "rabbitmq", [RABBITMQ], server_ip, port, timeout=BOOT_TIMEOUT_S,
                              user=SERVER_USER, env=env, cwd=home)  # fmt: skip
    broker = [f"--server={server_ip}", f"--port={port}", f"--username={USER}", f"--password={PASSWORD}"]
    rng = random.Random(ctx.index)
    with routed_source(ctx, server_ip, client_ip):
        run_tool(ctx, ["amqp-declare-queue", *broker, "-q", QUEUE, "-d"], timeout=10)
        for sent in ctx.rounds():
            if sent % 3:
                order = {"id": sent, "sku": f"SKU{rng.randrange(100):05d}", "qty": rng.randrange(1, 9)}
                run_tool(ctx, ["amqp-publish", *broker, "-r", QUEUE, "-p", "-C", "application/json",
                               "-b", json.dumps(order)], timeout=10)  # fmt: skip
            else:
                run_tool(ctx, ["amqp-get", *broker, "-q", QUEUE], timeout=10)
            ctx.pace(sent * 20)
    for cip, cport in ACCEPTED.findall(server_log.read_text(errors="replace")):
        if cip == client_ip:
            ctx.label(PROTO_TCP, (cip, int(cport)), (server_ip, port), "AMQP")
