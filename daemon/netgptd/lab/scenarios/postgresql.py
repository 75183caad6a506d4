"""PostgreSQL: the installed server's postgres binary, run as the postgres user
on a cluster initdb makes in the workdir (password logins), and psql
sessions of an order-taking application: a schema once, then inserts,
lookups, an update in a transaction and a report per connection. psql binds
no address, so the client's comes from a route (see routed_source); the
client ports come from the server's connection log."""

from __future__ import annotations

import glob
import random
import re
import shutil
from pathlib import Path

from netgptd.decode.packet import PROTO_TCP
from netgptd.lab.scenario import LabContext
from netgptd.lab.scenarios._servers import (Variant, on_both_ports, owned_dir, routed_source, run_tool,
                                            service_port, start_daemon)  # fmt: skip

USER, PASSWORD, DATABASE = "shop", "lab-pg-password", "shop"
SERVER_USER = "postgres"  # postgres refuses to run as root
CONNECTED = re.compile(r"connection received: host=(\S+) port=(\d+)")
SCHEMA = """
CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, city text);
CREATE TABLE orders (id serial PRIMARY KEY, customer int REFERENCES customers, total numeric(10,2),
                     status text DEFAULT 'new', placed timestamptz DEFAULT now());
CREATE INDEX ON orders (customer);
"""
CITIES = ["Lyon", "Porto", "Gdansk", "Leeds", "Graz", "Turin"]


def _binary(name: str) -> str:
    """A PostgreSQL server program: on the PATH, else in Debian's newest
    /usr/lib/postgresql/VERSION/bin (which the postgresql package does not put on it)."""
    installed = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(Path(p).parent.parent.name))
    return shutil.which(name) or (installed[-1] if installed else name)


def _session(rng: random.Random) -> str:
    """One connection's statements."""
    name = f"{rng.choice(['Ana', 'Ben', 'Chloe', 'Dev', 'Eve'])} {rng.choice(['Ruiz', 'Kim', 'Moreau', 'Novak'])}"
    order = "((SELECT max(id) FROM customers), {:.2f})"
    totals = ", ".join(order.format(rng.uniform(5, 400)) for _ in range(rng.randrange(1, 4)))
    return f"""
INSERT INTO customers (name, city) VALUES ('{name}', '{rng.choice(CITIES)}');
INSERT INTO orders (customer, total) VALUES {totals};
SELECT c.name, count(o.id), sum(o.total) FROM customers c JOIN orders o ON o.customer = c.id
  WHERE c.city = '{rng.choice(CITIES)}' GROUP BY c.name ORDER BY 3 DESC LIMIT 10;
BEGIN;
UPDATE orders SET status = 'shipped' WHERE id IN (SELECT id FROM orders WHERE status = 'new' LIMIT 3);
COMMIT;
SELECT status, count(*), round(avg(total), 2) FROM orders GROUP BY status;
"""


@on_both_ports("postgresql", "PostgreSQL sessions of an order-taking app (postgres, psql)",
               requires=(_binary("postgres"), _binary("initdb"), "psql", "ip"))  # fmt: skip
def postgresql(ctx: LabContext, variant: Variant) -> None:
    server_ip, client_ip = ctx.host(10), ctx.host(20)
    port = service_port(ctx, server_ip, 5432, variant)
    data = owned_dir(ctx, "pgdata", SERVER_USER)
    password_file = ctx.workdir / "pgpassword"
    password_file.write_text(PASSWORD + "\n")
    shutil.chown(password_file, SERVER_USER)
    run_tool(ctx, [_binary("initdb"), "-D", str(data), "-U", USER, f"--pwfile={password_file}",
                   "--auth=scram-sha-256", "--no-sync"], timeout=60, user=SERVER_USER)  # fmt: skip
    (data / "pg_hba.conf").write_text(f"host all all {ctx.network} scram-sha-256\n")
    argv = [_binary("postgres"), "-D", str(data), "-c", f"listen_addresses={server_ip}", "-c", f"port={port}",
            "-c", f"unix_socket_directories={data}", "-c", "log_connections=on", "-c", "fsync=off"]  # fmt: skip
    server_log = start_daemon(ctx, "postgres", argv, server_ip, port, user=SERVER_USER)
    env = {"PGPASSWORD": PASSWORD, "PATH": "/usr/bin:/bin"}
    psql = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c"]
    server = f"host={server_ip} port={port} user={USER}"
    rng = random.Random(ctx.index)
    with routed_source(ctx, server_ip, client_ip):
        run_tool(ctx, [*psql, f"CREATE DATABASE {DATABASE}", f"{server} dbname=postgres"], timeout=10, env=env)
        run_tool(ctx, [*psql, SCHEMA, f"{server} dbname={DATABASE}"], timeout=10, env=env)
        for sent in ctx.rounds():
            run_tool(ctx, [*psql, _session(rng), f"{server} dbname={DATABASE}"], timeout=10, env=env)
            ctx.pace(sent * 20)
    for cip, cport in CONNECTED.findall(server_log.read_text(errors="replace")):
        if cip == client_ip:
            ctx.label(PROTO_TCP, (cip, int(cport)), (server_ip, port), "PostgreSQL")
