"""MQTT: a mosquitto broker on the lab address, a dashboard subscribed for the
whole run, and sensors that connect, publish a few readings and leave
(paho-mqtt clients bound to their own source addresses)."""

from __future__ import annotations

import json
import random
import threading
from typing import TYPE_CHECKING

from netgptd.decode.packet import PROTO_TCP
from netgptd.lab.safety import LabError, wait_until
from netgptd.lab.scenario import LabContext, scenario
from netgptd.lab.scenarios._servers import start_daemon, well_known_port

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt

READINGS_PER_CONNECTION = 5
MOSQUITTO_CONFIG = """\
listener {port} {ip}
allow_anonymous true
persistence false
log_dest stderr
log_type error
log_type warning
log_type notice
"""


def _connect(client_id: str, broker: tuple[str, int], bind: tuple[str, int]) -> mqtt.Client:
    """A client connected from ``bind`` with its network loop running."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    client.connect(broker[0], broker[1], keepalive=30, bind_address=bind[0], bind_port=bind[1])
    client.loop_start()
    if not wait_until(client.is_connected, 5):
        client.loop_stop()
        raise LabError(f"mqtt: {client_id} got no CONNACK from {broker[0]}:{broker[1]}")
    return client


def _close(client: mqtt.Client) -> None:
    client.disconnect()
    client.loop_stop()


@scenario("mqtt", "benign", "MQTT sensors publishing to a dashboard (mosquitto broker, paho-mqtt clients)",
          requires=("mosquitto",), python=("paho",))  # fmt: skip
def mqtt_telemetry(ctx: LabContext) -> None:
    broker = (ctx.host(10), well_known_port(ctx, ctx.host(10), 1883))
    sensor_ip, dashboard = ctx.host(20), (ctx.host(21), ctx.free_port(ctx.host(21)))
    config = ctx.workdir / "mosquitto.conf"
    config.write_text(MOSQUITTO_CONFIG.format(ip=broker[0], port=broker[1]))
    start_daemon(ctx, "mosquitto", ["mosquitto", "-c", str(config)], *broker)
    rng = random.Random(ctx.index)
    received = 0
    subscribed = threading.Event()

    def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        nonlocal received
        received += 1

    viewer = _connect("dashboard", broker, dashboard)
    viewer.on_message = on_message
    viewer.on_subscribe = lambda *args: subscribed.set()
    try:
        viewer.subscribe("plant/+/+", qos=1)
        if not subscribed.wait(5):
            raise LabError("mqtt: the dashboard's subscription was not acknowledged")
        sent = 0
        while ctx.running():
            sensor = (sensor_ip, ctx.free_port(sensor_ip))
            name = f"sensor-{sent // READINGS_PER_CONNECTION % 16:02d}"
            client = _connect(name, broker, sensor)
            try:
                for _ in range(READINGS_PER_CONNECTION):
                    reading = {"t": round(rng.uniform(18, 26), 2), "rh": rng.randrange(30, 70)}
                    client.publish(f"plant/{name}/climate", json.dumps(reading), qos=1).wait_for_publish(5)
                    sent += 1
            finally:
                _close(client)
            ctx.label(PROTO_TCP, sensor, broker, "MQTT")
            ctx.pace(sent * 20)
    finally:
        _close(viewer)
        ctx.label(PROTO_TCP, dashboard, broker, "MQTT")
    if not received:
        raise LabError("mqtt: the dashboard received none of the sensors' readings")
