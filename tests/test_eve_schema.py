"""EVE that Suricata's tooling reads: every event validates against Suricata's own schema, extended only by ours.

The schema is Suricata's ``etc/schema.json`` (``../shared/conformance``, or
where ``NETGPT_CONFORMANCE`` points; skipped with a reason where absent),
extended by the top-level objects of ``netgptd/eve_schema.json``
(:func:`netgptd.eve.extended_schema`). Checked here: the events of replays
of the whole corpus (rules on; the model on the mining captures, which give
model and rule alerts), and of real ``netgptd run`` processes with the eve,
rules, trends, intents and ask plugins, two runs of one sensor appending to
one EVE file.

Replays validate each distinct shape of flow event once (the key set and
value types, timestamps and unit-interval numbers told apart, which is all
Suricata's schema and ours constrain in a flow event: validating 70,000
flow events one by one costs a minute here); every other event is
validated whole.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import jsonschema
import paho.mqtt.publish as paho_publish
import pytest

from broker import Mosquitto, mosquitto  # noqa: F401 -- the fixture
from conftest import REPO, capture_files
from netgptd.cloud.signing import sign
from netgptd.classify import model_alert
from netgptd.eve import app_proto, extended_schema, extension_schema, flow_event, stats_event, stats_of, with_host
from netgptd.flow.config import FlowConfig
from netgptd.flow.table import Flow, FlowTable
from netgptd.flow_ids import MAX_ID, first_flow_id, sensor_tag
from netgptd.model.bundle import DEFAULT_BUNDLE, load_bundle
from netgptd.model.session import Classifier, ModelSession
from netgptd.plugin_host import PluginHost, hookimpl
from netgptd.replay import replay
from netgptd.rules import RULES, FlowRateRules
from netgptd.signatures import MODEL_SIGNATURES, SIGNATURES, markdown_table
from test_daemon import MINING, Daemon
from test_flow_table import config, handshake
from test_logins import FTP_TRY
from test_logins import session as login_session

CONFORMANCE_ENV = "NETGPT_CONFORMANCE"
SURICATA_SCHEMA = "suricata-eve-schema.json"
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d+[+\-]\d+$")  # Suricata's, as in its schema
# Fields Suricata writes on these events that its schema does not require but its tools read.
EXPECTED = {
    "flow": [("flow", "alerted"), ("flow", "state"), ("flow", "reason"), ("host",)],
    "alert": [("alert", k) for k in ("action", "gid", "signature_id", "rev", "signature", "category", "severity")]
    + [("host",), ("netgpt", "detector")],
    "stats": [("stats",), ("netgpt", "stats"), ("host",)],
}
SURICATA_REASONS = {"timeout", "forced", "shutdown", "tcp_reuse", "unknown"}
SURICATA_STATES = {"new", "established", "closed", "bypassed"}


def conformance_path() -> Path:
    env = os.environ.get(CONFORMANCE_ENV)
    return Path(env).expanduser() if env else REPO.parent / "shared" / "conformance"


@pytest.fixture(scope="module")
def validator() -> jsonschema.Validator:
    path = conformance_path() / SURICATA_SCHEMA
    if not path.is_file():
        pytest.skip(f"Suricata's EVE schema not found at {path} (set {CONFORMANCE_ENV} to override)")
    schema = extended_schema(json.loads(path.read_text()))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def shape(value: Any) -> Any:
    """What the schemas constrain in a value: keys, types, timestamps, unit-interval numbers."""
    if isinstance(value, dict):
        return tuple(sorted((k, shape(v)) for k, v in value.items()))
    if isinstance(value, list):
        return ("list", tuple(sorted({repr(shape(v)) for v in value})))
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int):
        return "int" if 0 <= value <= MAX_ID else "int out of range"
    if isinstance(value, float):
        return "unit" if 0 <= value <= 1 else "float"
    if isinstance(value, str):
        return "timestamp" if TIMESTAMP.fullmatch(value) else "str"
    return type(value).__name__


def missing(event: dict[str, Any]) -> list[str]:
    """The expected fields (EXPECTED) an event lacks, as dotted paths."""
    absent = []
    for path in EXPECTED.get(event["event_type"], []):
        node: Any = event
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if node is None:
            absent.append(".".join(path))
    return absent


class Checker:
    """A plugin that validates what it is handed: each flow shape once (every flow with ``every_flow``),
    every other event whole."""

    def __init__(self, validator: jsonschema.Validator, every_flow: bool = False) -> None:
        self.validator, self.every_flow = validator, every_flow
        self.shapes: set[Any] = set()
        self.failures: list[str] = []
        self.types: Counter[str] = Counter()
        self.detectors: Counter[str] = Counter()
        self.flow_ids: list[int] = []
        self.verdicts = self.alerted = 0

    @hookimpl
    def netgpt_event(self, event: dict[str, Any]) -> None:
        self.check(event)

    def check(self, event: dict[str, Any]) -> None:
        kind = event["event_type"]
        self.types[kind] += 1
        if kind == "alert":
            self.detectors["model" if event["netgpt"]["detector"] == "model" else "rule"] += 1
        if kind == "flow":
            self.flow_ids.append(event["flow_id"])
            self.verdicts += event["netgpt"]["app"] is not None
            self.alerted += event["flow"]["alerted"]
            self._suricata_values(event)
            key = shape(event)
            if key in self.shapes and not self.every_flow:
                return
            self.shapes.add(key)
        self._fail(event, [f"{e.json_path}: {e.message[:200]}" for e in self.validator.iter_errors(event)]
                   + [f"{path}: missing" for path in missing(event)])  # fmt: skip

    def _suricata_values(self, event: dict[str, Any]) -> None:
        flow = event["flow"]
        wrong = [f"flow.reason {flow['reason']!r}"] if flow["reason"] not in SURICATA_REASONS else []
        wrong += [f"flow.state {flow['state']!r}"] if flow["state"] not in SURICATA_STATES else []
        wrong += ["app_proto null"] if "app_proto" in event and event["app_proto"] is None else []
        self._fail(event, wrong)

    def _fail(self, event: dict[str, Any], errors: list[str]) -> None:
        if errors and len(self.failures) < 20:
            self.failures.append(f"{event['event_type']}: {'; '.join(errors[:3])}\n  {json.dumps(event)[:600]}")


def replay_checked(validator: jsonschema.Validator, paths: list[Path], classifier: Any = None,
                   flow_config: FlowConfig | None = None) -> Checker:  # fmt: skip
    """Replay ``paths`` (each its own capture) with the rules plugin, every event through a Checker."""
    checker = Checker(validator)
    host = PluginHost({"rules": {}}, host="test-sensor")
    host.add(checker, "check")
    replay(paths, host.emit, flow_config=flow_config, classifier=classifier, alert_confidence=0.9,
           first_flow_id=first_flow_id("test-sensor", time.time()))  # fmt: skip
    host.close()
    return checker


def shipped_model() -> tuple[Classifier, FlowConfig]:
    if not (DEFAULT_BUNDLE / "manifest.json").exists():
        pytest.skip(f"no model shipped at {DEFAULT_BUNDLE}")
    bundle = load_bundle(DEFAULT_BUNDLE)
    return Classifier(ModelSession(bundle)), bundle.tokenizer.flow_config()


# -- the extension and the signatures -------------------------------------------------------


def test_the_extension_adds_only_our_documented_objects(validator: jsonschema.Validator) -> None:
    ours = extension_schema()["properties"]
    assert set(ours) == {"netgpt", "trend", "intent", "answer", "flood_summary"}
    suricata = json.loads((conformance_path() / SURICATA_SCHEMA).read_text())
    assert not set(ours) & set(suricata["properties"]), "a Suricata field redefined"
    section = readme_section("EVE output")
    for name in [*ours, *ours["netgpt"]["properties"]]:
        assert f"`{name}`" in section, f"README's EVE output section does not document {name}"


def test_suricata_fields_keep_suricata_types(validator: jsonschema.Validator) -> None:
    """What broke Suricata's indexes: alert.source as a string, app_proto null, our fields at the top level."""
    base = {"timestamp": "2024-05-01T12:00:00.000000+0000", "src_ip": "10.0.0.1", "dest_ip": "10.0.0.2"}
    old_alert = base | {"event_type": "alert", "alert": {"signature": "x", "category": "dos", "severity": 1,
                                                          "confidence": 0.5, "source": "syn_flood"}}  # fmt: skip
    assert not validator.is_valid(old_alert)
    assert not validator.is_valid(base | {"event_type": "flow", "app_proto": None})
    assert not validator.is_valid(base | {"event_type": "stats", "stats": {"packets": 1}})
    assert not validator.is_valid(base | {"event_type": "flow", "netgpt": {"app": "TLS", "mine": 1}})
    assert validator.is_valid(base | {"event_type": "alert", "alert": {"source": {"ip": "10.0.0.1", "port": 1}}})


def readme_section(title: str) -> str:
    text = (REPO / "README.md").read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else len(text)]


def test_readme_lists_every_signature_as_the_code_does() -> None:
    assert markdown_table() in readme_section("EVE signatures")


def test_every_rule_and_model_attack_has_its_own_stable_id() -> None:
    ids = [s.sid for s in SIGNATURES]
    assert len(ids) == len(set(ids)) and all(1_000_000 <= i < 2_000_000 for i in ids)
    manifest = json.loads((DEFAULT_BUNDLE / "manifest.json").read_text())
    assert set(RULES) == {"syn_flood", "synack_reflection", "udp_flood", "udp_reflection", "port_sweep", "host_sweep",
                          "bruteforce"}
    assert set(manifest["attacks"]) - {"benign"} <= set(MODEL_SIGNATURES)


# -- the event builders ------------------------------------------------------------------------


def one_flow() -> Flow:
    table = FlowTable(config(), first_flow_id=first_flow_id("unit", time.time()))
    return handshake(table)


def test_flow_record_in_suricata_terms(validator: jsonschema.Validator) -> None:
    flow = one_flow()
    event = with_host(flow_event(flow), "unit")
    assert "app_proto" not in event, "nothing detected: left out, never null"
    assert event["flow"]["alerted"] is False and event["netgpt"]["app"] is None and validator.is_valid(event)
    for end, reason in [("timeout", "timeout"), ("active_timeout", "forced"), ("tcp_reuse", "tcp_reuse"),
                        ("shutdown", "shutdown"), ("emergency", "timeout")]:  # fmt: skip
        flow.end_reason = end
        assert flow_event(flow)["flow"]["reason"] == reason
    assert flow_event(flow)["flow"]["emergency"] is True
    for app, proto in [("unknown", "failed"), ("TLS", "tls"), ("VNC", "rfb"), ("STUN", "stun"), (None, None)]:
        assert app_proto({"app": app}) == proto
    assert app_proto(None) is None


def test_model_alert_has_its_signature_and_marks_the_flow(validator: jsonschema.Validator) -> None:
    flow = one_flow()
    flow.verdict = {"app": "TLS", "app_confidence": 0.97, "attack": "mining", "attack_confidence": 0.99,
                    "model": "netgpt-small@0.1.0"}  # fmt: skip
    assert model_alert(flow, dict(flow.verdict, attack="benign"), 0.9) is None and not flow.alerted
    alert = with_host(model_alert(flow, flow.verdict, 0.9), "unit")
    assert alert["alert"] == {"action": "allowed", "gid": 1, "signature_id": 1_000_101, "rev": 1,
                              "signature": "NETGPT MODEL cryptocurrency mining", "category": "mining", "severity": 2}
    assert alert["netgpt"] == {"detector": "model", "confidence": 0.99, **flow.verdict} and validator.is_valid(alert)
    record = flow_event(flow)
    assert record["flow"]["alerted"] is True and record["app_proto"] == "tls" and validator.is_valid(record)
    other = model_alert(flow, dict(flow.verdict, attack="exfiltration"), 0.9)
    assert other["alert"]["signature_id"] == 1_000_199 and other["alert"]["category"] == "exfiltration"


def test_login_evidence_and_bruteforce_alerts_validate(validator: jsonschema.Validator) -> None:
    """``netgpt.logins`` on flow records (cleartext and encrypted services) and on the rule's alert."""
    rules = FlowRateRules()
    table = FlowTable(config())
    records = [login_session(21, [("s", b"220 ready\r\n"), *FTP_TRY * 3], cport=41000 + n, t=n * 5.0, table=table)
               for n in range(4)]  # fmt: skip
    ssh = [("s", b"SSH-2.0-OpenSSH_9.6\r\n"), ("c", b"SSH-2.0-x\r\n")]
    records.append(login_session(22, ssh, cport=42000, table=table))
    alerts = [alert for record in records for alert in rules.observe(record)]
    assert records[0]["netgpt"]["logins"] == {"service": "ftp", "attempts": 3, "failed": 3}
    assert records[-1]["netgpt"]["logins"] == {"service": "ssh", "short_session": True} and len(alerts) == 1
    for event in [*records, *alerts]:
        assert not list(validator.iter_errors(with_host(event, "unit")))
    wrong = dict(records[0], netgpt=dict(records[0]["netgpt"], logins={"service": "ftp", "failed": "3"}))
    assert not validator.is_valid(wrong)
    assert not validator.is_valid(dict(wrong, netgpt=dict(records[0]["netgpt"], logins={"failed": 3})))


def test_stats_in_suricata_layout_and_ours_whole(validator: jsonschema.Validator) -> None:
    ours = {"uptime": 12.5, "packets": 10, "bytes": 900, "decode_errors": {"truncated": 2, "bad_ip": 1}, "flows": 4,
            "active_flows": 1, "emergency_entered": 0, "alerts": 3, "capture_drops": {"kernel": 5},
            "plugins": {"mqtt": {"connected": 1}}}  # fmt: skip
    event = with_host(stats_event(0, ours), "unit")
    assert event["stats"] == {"uptime": 12, "capture": {"kernel_drops": 5},
                              "decoder": {"pkts": 10, "bytes": 900, "invalid": 3},
                              "flow": {"total": 4, "active": 1, "emerg_mode_entered": 0}, "detect": {"alert": 3}}
    assert stats_of(event) is ours and validator.is_valid(event)


# -- flow ids ---------------------------------------------------------------------------------


def test_flow_ids_of_two_sensors_differ_and_of_a_restart_do_not_collide(corpus: Path) -> None:
    now = time.time()
    assert sensor_tag("sensor-a") != sensor_tag("sensor-b")
    capture = [corpus / MINING]
    ids = {}
    for sensor in ("sensor-a", "sensor-b"):
        events: list[dict[str, Any]] = []
        replay(capture, events.append, flow_config=FlowConfig(first_packets=0), first_flow_id=first_flow_id(sensor, now))
        ids[sensor] = [e["flow_id"] for e in events if e["event_type"] == "flow"]
    a, b = ids["sensor-a"], ids["sensor-b"]
    assert len(set(a)) == len(a) > 1000 and not set(a) & set(b)
    assert all(0 < i <= MAX_ID for i in a + b), "JavaScript reads them exactly"
    # The same sensor started 0.5 s later begins above what this run (1,325 flows) gave out.
    assert first_flow_id("sensor-a", now + 0.5) > max(a)
    assert first_flow_id("sensor-a", now + 0.5) >> 43 == first_flow_id("sensor-a", now) >> 43


# -- replays of the whole corpus ---------------------------------------------------------------

COLLECTIONS = ["ndpi", "ddos", "suricata-verify", "tcpdump", "extra"]


@pytest.mark.corpus
@pytest.mark.parametrize("collection", COLLECTIONS)
def test_corpus_replay_events_validate(corpus: Path, validator: jsonschema.Validator, collection: str) -> None:
    """Without the model (it adds no field: the netgpt object's values are the model replay's business);
    first packets off, as without a model they are not read."""
    files = capture_files(corpus / collection)
    if not files:
        pytest.skip(f"no captures in {corpus / collection}")
    checker = replay_checked(validator, files, flow_config=FlowConfig(first_packets=0))
    assert not checker.failures, "\n".join(checker.failures)
    assert checker.types["flow"] > 0 and checker.types["stats"] == 1
    assert len(set(checker.flow_ids)) == len(checker.flow_ids)
    if collection == "ddos":
        assert checker.detectors["rule"] > 0


@pytest.mark.corpus
def test_model_replay_events_validate(corpus: Path, validator: jsonschema.Validator) -> None:
    """The model on: verdicts, app_proto, model alerts and rule alerts in one replay."""
    files = capture_files(corpus / "mining")
    if not files:
        pytest.skip(f"no captures in {corpus / 'mining'}")
    classifier, flow_config = shipped_model()
    checker = replay_checked(validator, files, classifier=classifier, flow_config=flow_config)
    assert not checker.failures, "\n".join(checker.failures)
    assert checker.verdicts > 0 and checker.detectors["model"] > 0 and checker.detectors["rule"] > 0
    assert checker.alerted == checker.detectors["model"], "flow.alerted on each flow a model alert is about"


# -- the daemon ------------------------------------------------------------------------------


@pytest.mark.corpus
@pytest.mark.slow
def test_daemon_events_validate_and_restart_keeps_flow_ids_unique(
    corpus: Path, validator: jsonschema.Validator, mosquitto: Mosquitto, tmp_path: Path  # noqa: F811
) -> None:
    """Two runs of one sensor append to one EVE file: the first with every plugin that writes events
    (18 s of capture at half speed: the intent model, 20 s to load on a busy 2-core machine, is there
    for most windows), the second a restart."""
    eve = tmp_path / "eve.json"
    key = tmp_path / "ops.key"
    key.write_text("0123456789abcdef0123456789abcdef\n")
    config = tmp_path / "netgptd.toml"
    config.write_text('[plugins.rules]\n[plugins.trends]\nwindow_s = 2.0\nhorizon = 3\nmin_history = 3\n'
                      'forecaster = "seasonal_naive"\n[plugins.intents]\nwindow_s = 2.0\n'
                      f'[plugins.ask]\nurl = "{mosquitto.url}"\nbackoff_initial = 0.05\nbackoff_max = 0.2\n'
                      f'requesters = {{ops = "{key}"}}\n')  # fmt: skip
    common = ("--eve", str(eve), "--source", f"pcap:{corpus / MINING}", "--site", "lab", "--sensor", "s1")
    first = Daemon(tmp_path / "first", "--config", str(config), *common, "--replay-speed", "0.5")
    try:
        first.wait_for_log("ask_connected")
        request = json.dumps(sign({"id": "q-eve", "intent": "isolate 10.0.0.99 now"}, "ops", key.read_text().strip().encode(),
                                  time.time()))  # fmt: skip
        paho_publish.single("netgpt/lab/s1/ask", request, qos=1, hostname=mosquitto.host, port=mosquitto.port)
        first.wait_for_log("ask_intents", timeout=40)  # answered (and its intents out) before the capture ends
        assert first.wait(timeout=60) == 0
    finally:
        first.kill()
    ran_once = len(eve.read_text().splitlines())
    plain = tmp_path / "plain.toml"
    plain.write_text("[plugins.rules]\n")
    second = Daemon(tmp_path / "second", "--config", str(plain), *common)
    try:
        assert second.wait() == 0
    finally:
        second.kill()
    events = [json.loads(line) for line in eve.read_text().splitlines()]
    checker = Checker(validator, every_flow=True)
    for event in events:
        checker.check(event)
    assert not checker.failures, "\n".join(checker.failures)
    assert {"flow", "alert", "stats", "trend", "intent", "answer"} <= set(checker.types), checker.types
    assert checker.detectors["model"] > 0 and checker.detectors["rule"] > 0
    assert all(e["host"] == "s1" for e in events)
    ids = checker.flow_ids
    first_ids = [e["flow_id"] for e in events[:ran_once] if e["event_type"] == "flow"]
    second_ids = [e["flow_id"] for e in events[ran_once:] if e["event_type"] == "flow"]
    # Each flow written, or counted in a flood summary (which of a flood's flows are written depends on when
    # the model's verdicts let them out).
    first_summarised, second_summarised = (sum(e["flood_summary"]["flows"] for e in part
                                               if e["event_type"] == "flood_summary")
                                           for part in (events[:ran_once], events[ran_once:]))  # fmt: skip
    assert len(first_ids) + first_summarised == len(second_ids) + second_summarised > 1000, "the same capture twice"
    assert len(set(ids)) == len(ids) and min(second_ids) > max(first_ids) and max(ids) <= MAX_ID
