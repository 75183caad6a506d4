"""Grafana dashboards and provisioning (``grafana/``).

Static checks: the dashboards parse, have their fixed uids, use the
``$datasource`` variable everywhere (any Prometheus; by default the
provisioned one, by its fixed uid), name only metrics the
daemon exports, group by no address-like label, match what
``grafana/generate.py`` writes, and every query is valid PromQL (``promtool``).

Live check: ``netgptd run`` replays a corpus capture with its metrics
endpoint on; a real Prometheus (Debian's ``prometheus``) scrapes it every
second, with the ``trends`` plugin on; then every query of every panel (the
``edge-llm`` ones, which read the trends plugin's gauges, included) must
return data.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from netgptd.synth.demo import write_demo_capture

REPO = Path(__file__).resolve().parent.parent
GRAFANA = REPO / "grafana"
DASHBOARDS = GRAFANA / "dashboards"
PROVISIONING = GRAFANA / "provisioning"
PROVISIONED_UID = "netgptd-prometheus"  # grafana/provisioning/datasources/netgptd.yaml
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}  # the dashboards' datasource variable
DASHBOARD_UIDS = {"overview.json": "netgptd-overview", "health.json": "netgptd-health", "model.json": "netgptd-model",
                  "fleet.json": "netgptd-fleet"}  # fmt: skip
EDGE_LLM = "edge-llm"  # in a panel's description or tags: it reads the trends plugin's metrics

# What netgptd_plugins.prometheus exports (histograms by their base name).
COUNTERS = {
    "netgpt_packets_total", "netgpt_bytes_total", "netgpt_capture_drops_total", "netgpt_decode_errors_total",
    "netgpt_skipped_packets_total", "netgpt_flows_total", "netgpt_flow_evictions_total", "netgpt_flow_emergency_total",
    "netgpt_flows_classified_total", "netgpt_flows_unclassified_total", "netgpt_flows_ended_total",
    "netgpt_flow_bytes_total", "netgpt_flow_packets_total", "netgpt_alerts_total", "netgpt_watchdog_pings_total",
    "netgpt_watchdog_stalls_total", "netgpt_plugin_errors_total", "netgpt_mqtt_outbox_dropped_total",
    "netgpt_mqtt_published_total", "netgpt_mqtt_reconnects_total", "netgpt_fragments_unmatched_total",
    "netgpt_rules_evicted_total", "netgpt_rules_sketched_total", "netgpt_rules_cooldowns_evicted_total",
    "netgpt_ask_received_total", "netgpt_ask_accepted_total", "netgpt_ask_rate_limited_total",
    "netgpt_ask_refused_total", "netgpt_ask_dropped_total", "netgpt_ask_malformed_total",
    "netgpt_flows_summarised_total", "netgpt_flood_summaries_total",
}  # fmt: skip
GAUGES = {
    "netgpt_build_info", "netgpt_model_info", "netgpt_uptime_seconds", "netgpt_flows_active", "netgpt_queue_depth",
    "netgpt_queue_capacity", "netgpt_mqtt_connected", "netgpt_mqtt_outbox_depth", "netgpt_rules_windows",
    "netgpt_rules_cooldowns", "netgpt_ask_connected", "netgpt_floods_followed", "netgpt_hotpath_fallback",
}  # fmt: skip
HISTOGRAMS = {"netgpt_app_confidence", "netgpt_attack_confidence", "netgpt_inference_duration_seconds",
              "netgpt_inference_batch_size"}  # fmt: skip
EXPORTED = COUNTERS | GAUGES | HISTOGRAMS
EDGE_LLM_METRICS = {"netgpt_trend_forecast", "netgpt_trend_actual"}  # exported with the trends plugin on

# Label names that would carry an address, a port or a flow's identity. Metrics have none (cardinality, privacy).
ADDRESS_LABEL = re.compile(r"^(ip|addr|address|host|mac|port|flow_id|community_id|tuple)$|_(ip|addr|address|port|mac)$")
IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
METRIC = re.compile(r"\bnetgpt_[a-z0-9_]+\b")
# Grafana's macros and our variable, as the live test substitutes them.
MACROS = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "5m", "$site": ".*", "$sensor": ".*",
          "$instance": ".*"}  # fmt: skip
# Prometheus's own series for each scrape of a sensor (job netgptd), which the fleet dashboard reads.
UP = re.compile(r'\bup\{job="netgptd"')


# -- helpers ---------------------------------------------------------------------------------------------------------


def load_dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text(encoding="utf-8")) for p in sorted(DASHBOARDS.glob("*.json"))}


def all_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those inside collapsed rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def is_edge_llm(panel: dict[str, Any]) -> bool:
    return EDGE_LLM in (panel.get("description") or "") or EDGE_LLM in panel.get("tags", [])


def queries() -> list[tuple[str, str]]:
    """(id, PromQL expression) of every panel target: id is ``file:panel title:refId``."""
    found = []
    for name, dashboard in load_dashboards().items():
        for panel in all_panels(dashboard):
            for t in panel.get("targets", []):
                found.append((f"{name}:{panel['title']}:{t.get('refId')}", t["expr"]))
    return found


def substitute(expr: str) -> str:
    """The expression as Prometheus gets it from Grafana (macros and variables filled in)."""
    for macro, value in sorted(MACROS.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(macro, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr}"
    return expr


def metric_names(expr: str) -> set[str]:
    """The netgptd metrics an expression reads, histogram series folded to their base name."""
    names = set()
    for name in METRIC.findall(expr):
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        names.add(base if base in HISTOGRAMS else name)
    return names


def label_names(expr: str) -> set[str]:
    """Every word of an expression but metric names (functions, keywords and strings too): a superset of its
    label names, including those label_replace() would make."""
    return {w for w in IDENT.findall(expr) if not w.startswith("netgpt_")}


def simple_yaml(text: str) -> dict[str, str]:
    """``key: value`` pairs of a provisioning file at any depth (enough to check it without PyYAML)."""
    pairs = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip().removeprefix("- ")
        if ":" in line:
            key, _, value = line.partition(":")
            pairs.setdefault(key.strip(), value.strip())
    return pairs


# -- static ----------------------------------------------------------------------------------------------------------


def test_dashboards_have_their_fixed_uids() -> None:
    dashboards = load_dashboards()
    assert set(dashboards) == set(DASHBOARD_UIDS)
    for name, dashboard in dashboards.items():
        assert dashboard["uid"] == DASHBOARD_UIDS[name], name
        assert dashboard["title"].startswith("netgptd"), name
        assert 36 <= dashboard["schemaVersion"] <= 41, name
        assert "id" not in dashboard or dashboard["id"] is None, f"{name}: a provisioned dashboard has no fixed id"


def test_the_datasource_is_a_variable_that_defaults_to_the_provisioned_one() -> None:
    """Imported on a Grafana without the provisioned uid, a dashboard still offers its Prometheus datasources."""
    for name, dashboard in load_dashboards().items():
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        assert list(variables)[0] == "datasource", f"{name}: the datasource comes first (the others query it)"
        datasource = variables["datasource"]
        assert (datasource["type"], datasource["query"]) == ("datasource", "prometheus"), name
        assert datasource["current"]["value"] == PROVISIONED_UID, name
        assert not datasource["multi"] and not datasource["includeAll"], name
        assert PROVISIONED_UID not in json.dumps({k: v for k, v in dashboard.items() if k != "templating"}), (
            f"{name}: a panel names the provisioned uid instead of $datasource"
        )


def test_every_panel_and_query_uses_the_datasource_variable() -> None:
    for name, dashboard in load_dashboards().items():
        ids = [p["id"] for p in all_panels(dashboard)]
        assert len(ids) == len(set(ids)), f"{name}: panel ids repeat"
        for panel in all_panels(dashboard):
            where = f"{name}: {panel['title']}"
            assert panel["datasource"] == DATASOURCE, where
            pos = panel["gridPos"]
            assert pos["x"] + pos["w"] <= 24 and pos["h"] > 0, where
            if panel["type"] == "row":
                continue
            assert panel["targets"], f"{where}: no query"
            assert panel.get("description"), f"{where}: no description"
            ref_ids = [t["refId"] for t in panel["targets"]]
            assert len(ref_ids) == len(set(ref_ids)), where
            for t in panel["targets"]:
                assert t["datasource"] == DATASOURCE, f"{where} {t['refId']}"
                assert t["expr"].strip(), f"{where} {t['refId']}"
        for variable in dashboard["templating"]["list"]:
            if variable["type"] == "query":
                assert variable["datasource"] == DATASOURCE, f"{name}: variable {variable['name']}"


def test_queries_read_only_exported_metrics_and_cover_them() -> None:
    used: set[str] = set()
    for name, dashboard in load_dashboards().items():
        for panel in all_panels(dashboard):
            for t in panel.get("targets", []):
                names = metric_names(t["expr"])
                assert names or UP.search(t["expr"]), f"{name}: {panel['title']} {t['refId']}: reads no netgptd metric"
                allowed = EXPORTED | (EDGE_LLM_METRICS if is_edge_llm(panel) else set())
                assert names <= allowed, f"{name}: {panel['title']}: unknown metric(s) {sorted(names - allowed)}"
                used |= names
        for variable in dashboard["templating"]["list"]:
            assert metric_names(variable.get("definition", "")) <= EXPORTED
    assert EXPORTED <= used, f"exported but on no panel: {sorted(EXPORTED - used)}"
    assert EDGE_LLM_METRICS <= used, "the edge LLM's trend panels are missing"


def test_no_query_names_an_address_like_label() -> None:
    for name, dashboard in load_dashboards().items():
        for panel in all_panels(dashboard):
            texts = [t["expr"] for t in panel.get("targets", [])]
            texts += [t.get("legendFormat", "") for t in panel.get("targets", [])]
            for transformation in panel.get("transformations", []):
                texts.append(json.dumps(transformation.get("options", {})))
            for text in texts:
                bad = {w for w in label_names(text) if ADDRESS_LABEL.search(w)}
                assert not bad, f"{name}: {panel['title']}: address-like label(s) {sorted(bad)} in {text}"


def test_edge_llm_panels_are_marked() -> None:
    """Panels that read the edge LLM's metrics say so, so that the live test skips them (and only them)."""
    marked = 0
    for dashboard in load_dashboards().values():
        for panel in all_panels(dashboard):
            reads = set().union(*(metric_names(t["expr"]) for t in panel.get("targets", [])), set())
            if reads & EDGE_LLM_METRICS:
                assert is_edge_llm(panel), panel["title"]
            if is_edge_llm(panel):
                marked += 1
                assert reads & EDGE_LLM_METRICS, f"{panel['title']}: marked edge-llm but reads none of its metrics"
    assert marked


def test_dashboards_are_what_the_generator_writes() -> None:
    spec = importlib.util.spec_from_file_location("grafana_generate", GRAFANA / "generate.py")
    assert spec and spec.loader
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    assert set(generate.BUILDERS) == set(DASHBOARD_UIDS)
    for name, builder in generate.BUILDERS.items():
        assert (DASHBOARDS / name).read_text(encoding="utf-8") == generate.render(builder), (
            f"grafana/dashboards/{name} differs from grafana/generate.py: run 'python grafana/generate.py'"
        )


def test_provisioning_files() -> None:
    datasource = (PROVISIONING / "datasources" / "netgptd.yaml").read_text(encoding="utf-8")
    dashboards = (PROVISIONING / "dashboards" / "netgptd.yaml").read_text(encoding="utf-8")
    ds, db = simple_yaml(datasource), simple_yaml(dashboards)
    assert ds["uid"] == PROVISIONED_UID and ds["type"] == "prometheus" and ds["url"] == "http://127.0.0.1:9090"
    assert db["type"] == "file" and db["folder"] == "netgptd" and db["path"] == "/var/lib/grafana/dashboards/netgptd"
    yaml = pytest.importorskip("yaml", reason="PyYAML not installed: parsed by the key: value check only")
    (source,) = yaml.safe_load(datasource)["datasources"]
    assert yaml.safe_load(datasource)["apiVersion"] == 1
    assert source["uid"] == PROVISIONED_UID and source["type"] == "prometheus"
    assert source["url"] == "http://127.0.0.1:9090"
    (provider,) = yaml.safe_load(dashboards)["providers"]
    assert provider["type"] == "file" and provider["folder"] == "netgptd"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards/netgptd"


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    """``promtool check rules`` parses each expression (as a recording rule), macros filled in."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus)")
    found = queries()
    rules = [{"record": f"grafana:query_{i}", "expr": substitute(expr)} for i, (_, expr) in enumerate(found)]
    path = tmp_path / "rules.yml"
    path.write_text(json.dumps({"groups": [{"name": "grafana", "rules": rules}]}), encoding="utf-8")  # JSON is YAML
    done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    if done.returncode:
        bad = [f"{qid}: {expr}" for i, (qid, expr) in enumerate(found) if f"query_{i}\"" in done.stdout + done.stderr]
        pytest.fail(f"promtool: {done.stdout}{done.stderr}\n" + "\n".join(bad))
    assert f"SUCCESS: {len(rules)} rules found" in done.stdout


# -- live ------------------------------------------------------------------------------------------------------------

# The demo capture (netgptd demo): a small office over 5 minutes of capture time, web and DNS flows the
# model classifies all along, and a port sweep at 90 s that the rules alert on. Replayed at LIVE_SPEED it
# lasts about 30 s and its flows time out (60 s of capture time: 6 s), so every panel has data while the
# daemon still runs: its metrics endpoint closes when the file ends. (The corpus's SYN-flood capture,
# used before, has no flow with payload: nothing for the model.)
LIVE_SPEED = 10
# Stats (the source of most metrics) every second rather than 10, and trends in 10 s windows of
# capture time (1 s here) with a quick forecaster, so the trend panel has data within seconds.
LIVE_CONFIG = """\
[sensor]
state_dir = "{state_dir}"

[stats]
interval = 1.0

[plugins.rules]

[plugins.trends]
window_s = 10.0
min_history = 3
forecaster = "last_value"
"""
NETGPTD = [sys.executable, "-m", "netgptd"]
LIVE_DEADLINE_S = 30.0  # after three scrapes, for every query to have returned data at least once


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 -- loopback only
        return response.read()


def log_tail(log: Path | None) -> str:
    return f"; log:\n{log.read_text(errors='replace')[-3000:]}" if log and log.exists() else ""


def wait_for(what: str, check: Any, timeout: float, proc: subprocess.Popen | None = None,
             log: Path | None = None, required: bool = True) -> Any:
    """Poll ``check()`` until it returns something true; fail naming ``what`` (with the process's log),
    or return None where not ``required`` and time is up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError, urllib.error.URLError):
            result = check()
            if result:
                return result
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"{what}: the process ended (status {proc.returncode})" + log_tail(log))
        time.sleep(0.25)
    if required:
        pytest.fail(f"{what}: not after {timeout:.0f} s" + log_tail(log))
    return None


@contextlib.contextmanager
def process(cmd: list[str], log: Path) -> Iterator[subprocess.Popen]:
    """A child process with its output in ``log``; ended (terminate, then kill) on the way out."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)


def run_help() -> str | None:
    """``netgptd run --help``, or None where there is no ``run`` command."""
    done = subprocess.run([*NETGPTD, "run", "--help"], capture_output=True, text=True, timeout=60, cwd=REPO)
    return done.stdout if done.returncode == 0 else None


def declared_families(exposition: str) -> set[str]:
    """Metric names the endpoint declares (``# TYPE`` lines: there even for a labelled counter with no series yet)."""
    names = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            names.add(name)
            if kind == "counter" and not name.endswith("_total"):  # OpenMetrics names the family without _total
                names.add(name + "_total")
    return names


def promql(base: str, expr: str) -> dict[str, Any]:
    return json.loads(http_get(f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})))


@contextlib.contextmanager
def mqtt_broker(tmp_path: Path) -> Iterator[str | None]:
    """A mosquitto on loopback (its URL), or None where mosquitto is not installed."""
    port = free_port()
    mosquitto = shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto",) if os.access(p, os.X_OK)), None)
    if mosquitto is None:
        yield None
        return
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n", encoding="utf-8")
    log = tmp_path / "mosquitto.log"
    with process([mosquitto, "-c", str(conf)], log) as proc:
        wait_for("mosquitto", lambda: socket.create_connection(("127.0.0.1", port), 1).close() or True, 10, proc, log)
        yield f"mqtt://127.0.0.1:{port}"


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_every_panel_query_returns_data(tmp_path: Path) -> None:
    """A real Prometheus scrapes a running ``netgptd run``; every panel query gives data."""
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        pytest.skip("prometheus not installed (Debian package prometheus)")
    capture = write_demo_capture(tmp_path / "office.pcapng")
    if run_help() is None:
        pytest.skip("no 'netgptd run' command")

    metrics_port, prom_port = free_port(), free_port()
    config = tmp_path / "netgptd.toml"
    config.write_text(LIVE_CONFIG.format(state_dir=tmp_path / "state"), encoding="utf-8")
    (tmp_path / "state").mkdir()
    cmd = [*NETGPTD, "run", "--config", str(config), "--source", f"pcap:{capture}", "--replay-speed", str(LIVE_SPEED),
           "--metrics", f"127.0.0.1:{metrics_port}", "--site", "test", "--sensor", "grafana"]  # fmt: skip
    prom_config = tmp_path / "prometheus.yml"
    prom_config.write_text(json.dumps({
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "netgptd", "static_configs": [{
            "targets": [f"127.0.0.1:{metrics_port}"], "labels": {"site": "test", "sensor": "grafana"}}]}],
    }), encoding="utf-8")  # fmt: skip
    base = f"http://127.0.0.1:{prom_port}"
    prom_cmd = [prometheus, f"--config.file={prom_config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"]  # fmt: skip
    wanted = {name for _, expr in queries() for name in metric_names(expr)}

    with contextlib.ExitStack() as stack:
        broker = stack.enter_context(mqtt_broker(tmp_path))
        if broker is None:  # the MQTT and ask plugins' metrics are there only with the plugins on
            wanted = {name for name in wanted if not name.startswith(("netgpt_mqtt_", "netgpt_ask_"))}
            skipped_mqtt = {qid for qid, expr in queries() if "netgpt_mqtt_" in expr or "netgpt_ask_" in expr}
        else:
            cmd += ["--mqtt", broker]
            with config.open("a", encoding="utf-8") as more:  # the ask channel, without the intent model
                more.write(f'\n[plugins.ask]\nurl = "{broker}"\nintents = false\n')
            skipped_mqtt = set()
        daemon_log, prom_log = tmp_path / "netgptd.log", tmp_path / "prometheus.log"
        prom = stack.enter_context(process(prom_cmd, prom_log))
        daemon = stack.enter_context(process(cmd, daemon_log))
        wait_for("prometheus", lambda: http_get(f"{base}/-/ready"), 30, prom, prom_log)

        # Every metric the panels read is declared once the first stats event is in (labelled ones maybe empty).
        def exported() -> set[str]:
            return declared_families(http_get(f"http://127.0.0.1:{metrics_port}/metrics").decode())

        wait_for("netgptd metrics endpoint", exported, 30, daemon, daemon_log)
        wait_for("netgptd metrics", lambda: wanted <= exported(), 15, daemon, daemon_log, required=False)
        declared = exported()
        missing = wanted - declared
        assert not missing, f"the daemon does not export {sorted(missing)}{log_tail(daemon_log)}"
        unshown = {n for n in declared if n.startswith("netgpt_") and not n.endswith("_created")
                   and n not in EXPORTED | EDGE_LLM_METRICS and f"{n}_total" not in EXPORTED}  # fmt: skip
        assert not unshown, f"the daemon exports {sorted(unshown)}: add them to a dashboard (grafana/generate.py)"

        # rate() needs two samples in its window: wait for three scrapes.
        scraped = 'sum_over_time(up{job="netgptd"}[1m]) >= 3 and up{job="netgptd"} == 1'
        wait_for("three scrapes of netgptd", lambda: promql(base, scraped)["data"]["result"], 30, daemon, daemon_log)

        pending = {qid: expr for qid, expr in queries() if qid not in skipped_mqtt}
        deadline = time.monotonic() + LIVE_DEADLINE_S
        while pending and time.monotonic() < deadline and daemon.poll() is None:
            for qid, expr in list(pending.items()):
                answer = promql(base, substitute(expr))
                assert answer["status"] == "success", f"{qid}: {answer}"
                if answer["data"]["result"]:
                    del pending[qid]
            if pending:
                time.sleep(1)
        assert not pending, "queries with no data:\n" + "\n".join(f"{q}: {substitute(e)}" for q, e in pending.items())

        # The data is the capture's, not zeros: packets went through the model, flows ended, alerts came.
        nonzero = ["netgpt_packets_total", "netgpt_flows_ended_total", "netgpt_alerts_total",
                   "netgpt_flows_classified_total", "netgpt_inference_duration_seconds_count"]  # fmt: skip
        for expr in nonzero + (["netgpt_mqtt_connected", "netgpt_mqtt_published_total"] if broker else []):
            result = promql(base, f"sum(max_over_time({expr}[5m])) > 0")["data"]["result"]
            assert result, f"{expr} stayed 0 while replaying the demo capture"
        variable = json.loads(http_get(f"{base}/api/v1/label/instance/values?match[]=netgpt_build_info"))
        assert variable["data"] == [f"127.0.0.1:{metrics_port}"], "the $instance variable lists the sensor"
        for label, value in (("site", "test"), ("sensor", "grafana")):
            variable = json.loads(http_get(f"{base}/api/v1/label/{label}/values?match[]=netgpt_build_info"))
            assert variable["data"] == [value], f"the ${label} variable lists the scrape's target label"
        model = promql(base, "last_over_time(netgpt_model_info[5m])")["data"]["result"]
        assert model and {"name", "version", "provider"} <= set(model[0]["metric"]), model
