"""MySQL: MariaDB's server (mariadbd --no-defaults, its own datadir made by
mariadb-install-db, dropping to the mysql user) and mariadb client sessions
of an inventory application. The mariadb client binds no address, so the
client's comes from a route (see routed_source); each session ends by asking
the server for its own connection's host, which names the client port."""

from __future__ import annotations

import random

from netgptd.decode.packet import PROTO_TCP
from netgptd.lab.safety import LabError
from netgptd.lab.scenario import LabContext
from netgptd.lab.scenarios._servers import (Variant, on_both_ports, owned_dir, routed_source, run_tool, service_port,
                                            start_daemon)  # fmt: skip

USER, PASSWORD, DATABASE = "stock", "lab-mysql-password", "inventory"
SERVER_USER = "mysql"
SETUP = f"""
CREATE DATABASE {DATABASE};
CREATE USER '{USER}'@'%' IDENTIFIED BY '{PASSWORD}';
GRANT ALL ON {DATABASE}.* TO '{USER}'@'%';
CREATE TABLE {DATABASE}.items (sku CHAR(8) PRIMARY KEY, name VARCHAR(64), qty INT, price DECIMAL(8,2));
CREATE TABLE {DATABASE}.moves (id INT AUTO_INCREMENT PRIMARY KEY, sku CHAR(8), delta INT,
                               at TIMESTAMP DEFAULT CURRENT_TIMESTAMP);
"""
OWN_HOST = "SELECT HOST FROM information_schema.PROCESSLIST WHERE ID = CONNECTION_ID();"
GOODS = ["bolt", "washer", "hinge", "bracket", "spring", "gasket", "valve", "clamp"]


def _session(rng: random.Random) -> str:
    """One connection's statements, ending with OWN_HOST."""
    sku = f"SKU{rng.randrange(100):05d}"
    qty, delta = rng.randrange(10, 500), rng.randrange(-20, 40)
    return f"""
INSERT INTO items VALUES ('{sku}', '{rng.choice(GOODS)} {rng.randrange(2, 24)}mm', {qty}, {rng.uniform(0.1, 30):.2f})
  ON DUPLICATE KEY UPDATE qty = qty + {delta};
START TRANSACTION;
INSERT INTO moves (sku, delta) VALUES ('{sku}', {delta});
UPDATE items SET qty = qty + {delta} WHERE sku = '{sku}';
COMMIT;
SELECT sku, name, qty FROM items WHERE qty < {rng.randrange(50, 200)} ORDER BY qty LIMIT 5;
SELECT sku, SUM(delta) FROM moves GROUP BY sku ORDER BY 2 DESC LIMIT 3;
{OWN_HOST}
"""


@on_both_ports("mysql", "MySQL sessions of an inventory app (mariadbd, mariadb client)",
               requires=("mariadbd", "mariadb-install-db", "mariadb", "ip"))  # fmt: skip
def mysql(ctx: LabContext, variant: Variant) -> None:
    server_ip, client_ip = ctx.host(10), ctx.host(20)
    port = service_port(ctx, server_ip, 3306, variant)
    data = owned_dir(ctx, "mysql", SERVER_USER)
    run_tool(ctx, ["mariadb-install-db", "--no-defaults", f"--datadir={data}", f"--user={SERVER_USER}",
                   "--auth-root-authentication-method=socket", "--skip-test-db"], timeout=60)  # fmt: skip
    setup = ctx.workdir / "setup.sql"
    setup.write_text(SETUP)
    setup.chmod(0o644)
    argv = ["mariadbd", "--no-defaults", f"--datadir={data}", f"--user={SERVER_USER}", f"--bind-address={server_ip}",
            f"--port={port}", f"--socket={data}/mysqld.sock", f"--pid-file={data}/mysqld.pid", "--skip-name-resolve",
            "--skip-log-bin", "--innodb-buffer-pool-size=16M", f"--init-file={setup}"]  # fmt: skip
    start_daemon(ctx, "mariadbd", argv, server_ip, port)
    client = ["mariadb", "--no-defaults", "--protocol=TCP", f"--host={server_ip}", f"--port={port}",
              f"--user={USER}", f"--password={PASSWORD}", "--batch",
              "--skip-column-names", DATABASE, "-e"]  # fmt: skip
    rng = random.Random(ctx.index)
    with routed_source(ctx, server_ip, client_ip):
        for sent in ctx.rounds():
            host = run_tool(ctx, [*client, _session(rng)], timeout=10).strip().splitlines()[-1]
            ip, _, cport = host.rpartition(":")
            if ip != client_ip:
                raise LabError(f"mysql: the server saw the client as {host!r}, not {client_ip}")
            ctx.label(PROTO_TCP, (client_ip, int(cport)), (server_ip, port), "MySQL")
            ctx.pace(sent * 20)
