"""Modbus/TCP: a pymodbus server on port 502 (nDPI knows Modbus only there)
and a SCADA-style poller reading and writing its registers and coils."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from netgptd.decode.packet import PROTO_TCP
from netgptd.lab.safety import LabError
from netgptd.lab.scenario import LabContext, scenario
from netgptd.lab.scenarios._servers import LoopThread, well_known_port

if TYPE_CHECKING:
    from pymodbus.client import ModbusTcpClient
    from pymodbus.server import ModbusTcpServer

DEVICE_ID = 1
CYCLES_PER_CONNECTION = 2


async def _start_server(ip: str, port: int) -> ModbusTcpServer:
    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import DataType, SimData, SimDevice

    device = SimDevice(DEVICE_ID, simdata=[SimData(0, count=100, values=0, datatype=DataType.REGISTERS)])
    server = ModbusTcpServer(device, address=(ip, port))
    await server.serve_forever(background=True)
    return server


def _poll(client: ModbusTcpClient, rng: random.Random) -> int:
    """Polling cycles: read the process values, write a setpoint and a block
    of parameters, read the coils. Returns the number of requests."""
    sent = 0
    for _ in range(CYCLES_PER_CONNECTION):
        replies = [
            client.read_holding_registers(0, count=10, device_id=DEVICE_ID),
            client.write_register(rng.randrange(10, 20), rng.randrange(1000), device_id=DEVICE_ID),
            client.write_registers(20, [rng.randrange(500) for _ in range(4)], device_id=DEVICE_ID),
            client.read_coils(30, count=16, device_id=DEVICE_ID),
        ]
        if any(reply.isError() for reply in replies):
            raise LabError("modbus: the server answered a request with an exception")
        sent += len(replies)
    return sent


@scenario("modbus", "benign", "Modbus/TCP register and coil polling (pymodbus server and client)",
          python=("pymodbus",))  # fmt: skip
def modbus(ctx: LabContext) -> None:
    from pymodbus.client import ModbusTcpClient

    server_ip, client_ip = ctx.host(10), ctx.host(20)
    port = well_known_port(ctx, server_ip, 502)
    rng = random.Random(ctx.index)
    loop = LoopThread()
    try:
        server = loop.run(_start_server(server_ip, port))
        try:
            ctx.wait_listening(server_ip, port)
            sent = 0
            while ctx.running():
                cport = ctx.free_port(client_ip)
                client = ModbusTcpClient(server_ip, port=port, source_address=(client_ip, cport), timeout=5)
                if not client.connect():
                    raise LabError(f"modbus: cannot connect to {server_ip}:{port}")
                try:
                    sent += _poll(client, rng)
                finally:
                    client.close()
                ctx.label(PROTO_TCP, (client_ip, cport), (server_ip, port), "Modbus")
                ctx.pace(sent * 20)
        finally:
            loop.run(server.shutdown())
    finally:
        loop.close()
