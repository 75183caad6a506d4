"""Configuration: every mistake is refused with a message naming the key; flags override the file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from netgptd.config import ConfigError, Settings, override, parse_text, with_plugin
from netgptd.plugin_host import PluginError
from netgptd.service import check_plugins

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[model]\nmax_bach = 3\n", "[model] max_bach: unknown key (known: enabled, path, max_batch"),
        ("[model]\nmax_batch = \"many\"\n", "[model] max_batch: expected int, got str 'many'"),
        ("[model]\nmax_batch = 0\n", "[model] max_batch: must be between 1 and 65536, not 0"),
        ("[model]\nalert_confidence = 1.5\n", "[model] alert_confidence: must be between 0 and 1, not 1.5"),
        ("[model]\nenabled = 1\n", "[model] enabled: expected bool, got int 1"),
        ("[capture]\nsource = \"eth0\"\n", "[capture] source: must be pcap:FILE, live:IFACE or pyshark:IFACE, not 'eth0'"),
        ("[capture]\nreplay_speed = -1\n", "[capture] replay_speed: must be between 0 and 1000000, not -1"),
        # Absurd numbers: refused here, not by onnxruntime, struct or the memory they would take.
        ("[model]\nthreads = 100000000000000000000\n", "[model] threads: must be between 1 and 1024, not 100000000000000000000"),
        ("[model]\nthreads = 1e20\n", "[model] threads: expected int, got float 1e+20"),
        ("[model]\nqueue = 1000000000\n", "[model] queue: must be between 1 and 1048576, not 1000000000"),
        ("[capture]\nqueue = 1000000000\n", "[capture] queue: must be between 16 and 1048576, not 1000000000"),
        ("[flows]\nmax_flows = 1000000000\n", "[flows] max_flows: must be between 16 and 16777216, not 1000000000"),
        ("[flows]\ncommunity_id_seed = 70000\n", "[flows] community_id_seed: must be between 0 and 65535, not 70000"),
        ("[stats]\ninterval = inf\n", "[stats] interval: must be between 0.1 and 86400, not inf"),
        ("[model]\nmax_wait_ms = nan\n", "[model] max_wait_ms: must be between 0 and 60000, not nan"),
        # Names go into MQTT topics: a broker's rules.
        ("[sensor]\nsite = \"rel/+\"\n", "[sensor] site: must be 1-64 characters of A-Z a-z 0-9 . _ -, not 'rel/+'"),
        ("[sensor]\nsensor = \"a#b\"\n", "[sensor] sensor: must be 1-64 characters of A-Z a-z 0-9 . _ -, not 'a#b'"),
        ("[sensor]\nsite = \"\"\n", "[sensor] site: must be 1-64 characters"),
        ("[sensor]\nsite = \"a\\u0000b\"\n", "[sensor] site: must be 1-64 characters"),
        ("[sensor]\nsite = \"" + "s" * 10_000_000 + "\"\n", "[sensor] site: must be 1-64 characters of A-Z a-z 0-9 . _ -, not 'ssss"),
        ("[sensor]\nlocation = \"" + "l" * 1000 + "\"\n", "[sensor] location: must be at most 256 characters, not 1,000"),
        ("[captures]\nsource = \"live:eth0\"\n", "[captures]: unknown section"),
        ("capture = 3\n", "[capture]: must be a table, not int"),
        ("[plugins]\nmqtt = 1\n", "[plugins] mqtt: must be a table ([plugins.mqtt])"),
        ("[plugins.mqtt]\nenabled = \"yes\"\n", "[plugins.mqtt] enabled: expected bool, got str 'yes'"),
        ("[model\nmax_batch = 3\n", "not valid TOML"),
        ("x = " + "[" * 5000 + "]" * 5000 + "\n", "not valid TOML: nested too deeply"),
        ("x = " + "{a = " * 5000 + "1" + "}" * 5000 + "\n", "not valid TOML: nested too deeply"),
    ],
    ids=lambda value: value[:60] if isinstance(value, str) else None,
)
def test_mistakes_name_the_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_text(text, "netgptd.toml")
    assert str(caught.value).startswith("netgptd.toml: ")
    assert message in str(caught.value)
    assert len(str(caught.value)) < 300  # one readable line, whatever was given


def test_defaults_and_sections() -> None:
    settings = parse_text("[sensor]\nsite = \"campus\"\n[model]\nmax_batch = 64\nmax_wait_ms = 5\n")
    assert settings.sensor.site == "campus" and settings.model.max_batch == 64
    assert settings.model.max_wait_ms == 5.0  # an integer is a fine float
    assert settings.capture == Settings().capture
    assert dict(settings.plugins) == {"rules": {}, "prometheus": {}}  # no [plugins]: the default set


def test_plugins_table_enables_exactly_what_it_lists() -> None:
    settings = parse_text("[plugins.eve]\npath = \"/tmp/e.json\"\n[plugins.mqtt]\nenabled = false\nurl = \"mqtt://x\"\n")
    assert dict(settings.plugins) == {"eve": {"path": "/tmp/e.json"}}


def test_flags_override_the_file_and_are_checked() -> None:
    settings = parse_text("[capture]\nsource = \"live:eth0\"\nreplay_speed = 2.0\n")
    changed = override(settings, capture__source="pcap:/x.pcap", capture__replay_speed=None, sensor__site="s2")
    assert changed.capture.source == "pcap:/x.pcap" and changed.capture.replay_speed == 2.0
    assert changed.sensor.site == "s2" and changed.source_kind == "pcap" and changed.source_target == "/x.pcap"
    with pytest.raises(ConfigError, match=r"command line: \[capture\] source"):
        override(settings, capture__source="nonsense")
    with_mqtt = with_plugin(settings, "mqtt", url="mqtt://h:1")
    assert with_mqtt.plugins["mqtt"] == {"url": "mqtt://h:1"} and "mqtt" not in settings.plugins


@pytest.mark.parametrize(
    ("plugins", "message"),
    [
        ({"nosuch": {}}, "[plugins.nosuch]: unknown plugin (installed: "),
        ({"eve": {"pth": "x"}}, "[plugins.eve] pth: unknown setting (known: path, append)"),
        ({"eve": {"append": "yes"}}, "[plugins.eve] append: expected bool, got str 'yes'"),
        ({"rules": {"window": 3}}, "[plugins.rules] window: unknown setting (known: window_s,"),
        ({"rules": {"window_s": "3"}}, "[plugins.rules] window_s: expected float, got str '3'"),
    ],
)
def test_plugin_settings_are_checked_without_starting(plugins: dict, message: str) -> None:
    with pytest.raises(PluginError) as caught:
        check_plugins(Settings(plugins=plugins))
    assert message in str(caught.value)


def test_shipped_example_passes_check_config(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "netgptd", "check-config", "--config", str(REPO / "netgptd.example.toml"),
         "--state-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "configuration OK" in result.stdout


def test_check_config_reports_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[flows]\nmax_flows = \"lots\"\n")
    result = subprocess.run([sys.executable, "-m", "netgptd", "check-config", "--config", str(bad)],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == f"netgptd: error: {bad}: [flows] max_flows: expected int, got str 'lots'"
