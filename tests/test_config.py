"""Configuration: every mistake is refused with a message naming the key; flags override the file."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from netgptd.config import ConfigError, Settings, override, parse_text, with_plugin
from netgptd.mqtt_names import check_mqtt, name_problem
from netgptd.plugin_host import PluginError
from netgptd.preflight import check_memory
from netgptd.service import check_plugins
from netgptd.synth.demo import write_demo_capture

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
        ({"eve": {"pth": "x"}}, "[plugins.eve] pth: unknown setting (known: path, append, flush_delay)"),
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
    """The example as shipped; its EVE file goes to a temporary folder (/var/log/netgptd is made by systemd's
    LogsDirectory=, which a test machine does not have)."""
    result = subprocess.run(
        [sys.executable, "-m", "netgptd", "check-config", "--config", str(REPO / "netgptd.example.toml"),
         "--state-dir", str(tmp_path), "--eve", str(tmp_path / "eve.json")],
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


# --- check-config checks what run will need ------------------------------------------------------------

# torch and transformers are installed here (the train extra); this finder hides them from the
# check-config process, as on a machine without the extra.
HIDE_LLM = """
import sys

class _Hidden:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("torch", "transformers"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, _Hidden())
"""


def check_config(tmp_path: Path, text: str, *flags: str, env: dict[str, str] | None = None,
                 source: str | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """``netgptd check-config`` as an operator runs it, on ``text`` as the configuration file."""
    config = tmp_path / "netgptd.toml"
    config.write_text(text)
    if source is None:
        source = f"pcap:{write_demo_capture(tmp_path / 'demo.pcapng')}"
    command = [sys.executable, "-m", "netgptd", "check-config", "--config", str(config), "--no-model",
               "--source", source, *flags]  # fmt: skip
    if "--state-dir" not in flags:
        command += ["--state-dir", str(tmp_path / "state")]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env=os.environ | (env or {}))


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("netgptd: error: ")
    return result.stderr.strip().removeprefix("netgptd: error: ")


def hide_llm(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "hide").mkdir()
    (tmp_path / "hide" / "sitecustomize.py").write_text(HIDE_LLM)
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path / "hide"), os.environ.get("PYTHONPATH")]))}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[plugins.mqtt]\nkeepalive = 100000\n",
         "[plugins.mqtt] keepalive: must be between 0 and 65535 seconds (MQTT's limit), got 100000"),
        ("[plugins.mqtt]\ntopic_prefix = \"netgpt/+/{sensor}/\"\n",
         "[plugins.mqtt] topic_prefix: 'netgpt/+/edge-1/' holds an MQTT wildcard (+ or #) or NUL"),
        ("[plugins.mqtt]\ntopic_prefix = \"netgpt/{site}\\u0000/\"\n", "[plugins.mqtt] topic_prefix: 'netgpt/campus\\x00/' holds"),
        ("[plugins.mqtt]\ntopic_prefix = \"" + "t" * 2000 + "/\"\n", "[plugins.mqtt] topic_prefix: 2,001 bytes long, more than 1,024"),
        ("[plugins.ask]\ntopic_prefix = \"netgpt/{site}/#\"\nintents = false\n", "[plugins.ask] topic_prefix: 'netgpt/campus/#' holds"),
        ("[plugins.ask]\nkeepalive = -1\nintents = false\n", "[plugins.ask] keepalive: must be between 0 and 65535"),
        ("[flows]\nmax_flows = 100000000\n", "[flows] max_flows: must be between 16 and 16777216, not 100000000"),
    ],
)
def test_check_config_refuses_what_would_disable_mqtt(text: str, message: str, tmp_path: Path) -> None:
    """Values that used to pass the check and then stopped MQTT (or the daemon) at run time."""
    result = check_config(tmp_path, "[sensor]\nsite = \"campus\"\nsensor = \"edge-1\"\n" + text)
    assert message in one_error_line(result)


def test_site_name_from_the_command_line_is_checked(tmp_path: Path) -> None:
    result = check_config(tmp_path, "[plugins.mqtt]\n", "--site", "rel/+")
    assert one_error_line(result) == (
        "command line: [sensor] site: must be 1-64 characters of A-Z a-z 0-9 . _ -, not 'rel/+'")


@pytest.mark.slow  # a check-config process per case
def test_check_config_refuses_a_capture_source_run_cannot_open(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pcap"
    assert one_error_line(check_config(tmp_path, "", source=f"pcap:{missing}")) == (
        f"[capture] source: no such capture file: {missing}")
    text = tmp_path / "notes.pcap"
    text.write_text("not a capture at all, just words\n")
    assert one_error_line(check_config(tmp_path, "", source=f"pcap:{text}")) == (
        f"[capture] source: {text}: not a pcap or pcapng capture (magic 0x6e6f7420)")
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(b"")
    assert one_error_line(check_config(tmp_path, "", source=f"pcap:{empty}")) == (
        f"[capture] source: {empty}: not a pcap or pcapng capture (too short)")
    assert one_error_line(check_config(tmp_path, "", source=f"pcap:{tmp_path}")) == (
        f"[capture] source: {tmp_path}: not a regular file")


@pytest.mark.slow  # a check-config process per case
@pytest.mark.skipif(not Path("/sys/class/net/lo").exists(), reason="needs Linux's /sys/class/net")
def test_check_config_refuses_a_missing_interface_or_capture_tool(tmp_path: Path) -> None:
    message = one_error_line(check_config(tmp_path, "", source="live:nosuch0"))
    assert message.startswith("[capture] source: no interface 'nosuch0' here (there are: ") and "lo" in message
    assert one_error_line(check_config(tmp_path, "", source="live:../../etc")) == (
        "[capture] source: '../../etc' is not an interface name")
    empty_path = {"PATH": str(tmp_path)}  # nothing to run on it: as where Wireshark's tools are not installed
    for kind, tool in (("live", "dumpcap"), ("pyshark", "tshark")):
        assert one_error_line(check_config(tmp_path, "", source=f"{kind}:lo", env=empty_path)) == (
            f"[capture] source: {kind}: captures through {tool}, which is not installed (apt-get install tshark)")
    if shutil.which("dumpcap"):
        result = check_config(tmp_path, "", source="live:lo")
        assert result.returncode == 0 and "configuration OK (source live:lo" in result.stdout, result.stderr


@pytest.mark.slow  # a check-config process per case
def test_check_config_refuses_a_state_dir_it_cannot_write(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("")
    assert one_error_line(check_config(tmp_path, "", "--state-dir", str(afile / "state"))) == (
        f"[sensor] state_dir: cannot create {afile / 'state'}: {afile} is not a directory")
    result = check_config(tmp_path, "", "--state-dir", str(tmp_path / "new" / "state"))
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "new").exists()  # checked, not created


@pytest.mark.root
@pytest.mark.slow  # a check-config process per case
@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a read-only tmpfs needs root")
def test_check_config_refuses_a_read_only_state_dir(tmp_path: Path) -> None:
    readonly = tmp_path / "ro"
    readonly.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(readonly)], check=True)
    try:
        assert one_error_line(check_config(tmp_path, "", "--state-dir", str(readonly))) == (
            f"[sensor] state_dir: cannot write in {readonly}: Read-only file system ({readonly})")
        assert one_error_line(check_config(tmp_path, "", "--state-dir", str(readonly / "sub"))) == (
            f"[sensor] state_dir: cannot create {readonly / 'sub'}: Read-only file system ({readonly})")
        eve = readonly / "eve.json"
        assert one_error_line(check_config(tmp_path, f"[plugins.eve]\npath = \"{eve}\"\n")) == (
            f"[plugins.eve] path: {eve}: cannot create a file in {readonly}: Read-only file system")
    finally:
        subprocess.run(["umount", str(readonly)], check=True)


def run_fails_at_once(tmp_path: Path) -> str:
    """``netgptd run`` on the configuration check_config wrote: the one error line it stops with."""
    command = [sys.executable, "-m", "netgptd", "run", "--config", str(tmp_path / "netgptd.toml"), "--no-model",
               "--source", f"pcap:{tmp_path / 'demo.pcapng'}", "--state-dir", str(tmp_path / "state")]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    plain = [line for line in result.stderr.splitlines() if not line.startswith("{")]  # the JSON log aside
    assert len(plain) == 1 and "Traceback" not in result.stderr, result.stderr
    return plain[0].removeprefix("netgptd: error: ")


# (configuration, error); {t} is the test's folder, where "missing" is not and "folder" is a folder.
PLUGIN_FILE_CASES = [
    ("[plugins.mqtt]\nurl = \"mqtts://localhost\"\nca_file = \"{t}/missing\"\n",
     "[plugins.mqtt] ca_file: {t}/missing: No such file or directory"),
    ("[plugins.mqtt]\nusername = \"u\"\npassword_file = \"{t}/folder\"\n",
     "[plugins.mqtt] password_file: {t}/folder: Is a directory"),
    ("[plugins.ask]\nintents = false\nurl = \"mqtts://localhost\"\ncert_file = \"{t}/missing\"\n",
     "[plugins.ask] cert_file: {t}/missing: No such file or directory"),
    ("[plugins.ask]\nintents = false\nrequesters = {{ alice = \"{t}/missing\" }}\n",
     "[plugins.ask] requesters.alice: {t}/missing: cannot read the key (No such file or directory)"),
    ("[plugins.ask]\nintents = false\napi_key_file = \"{t}/missing\"\n",
     "[plugins.ask] api_key_file: {t}/missing: No such file or directory"),
    ("[plugins.ask]\nintents = false\nintent_profile = \"{t}/missing\"\n",
     "[plugins.ask] intent_profile: {t}/missing: No such file or directory"),
    ("[plugins.intents]\nprofile = \"{t}/missing\"\n", "[plugins.intents] profile: {t}/missing: No such file or directory"),
    ("[plugins.eve]\npath = \"{t}/missing/eve.json\"\n", "[plugins.eve] path: {t}/missing/eve.json: no folder {t}/missing"),
    ("[plugins.eve]\npath = \"{t}/folder\"\n", "[plugins.eve] path: {t}/folder: Is a directory"),
    ("[plugins.eve]\npath = \"{t}/link\"\nappend = false\n", "[plugins.eve] path: {t}/link: is a symbolic link (not followed)"),
]


@pytest.mark.slow  # two processes per case
@pytest.mark.parametrize(("text", "message"), PLUGIN_FILE_CASES)
def test_check_config_checks_the_files_plugins_open(text: str, message: str, tmp_path: Path) -> None:
    """Found when the plugin is made, these stopped ``run`` after check-config had said OK."""
    (tmp_path / "folder").mkdir()
    target = tmp_path / "target"
    target.write_text("kept\n")
    (tmp_path / "link").symlink_to(target)
    t = str(tmp_path)
    assert one_error_line(check_config(tmp_path, text.format(t=t))) == message.format(t=t)
    assert run_fails_at_once(tmp_path) == message.format(t=t)
    assert target.read_text() == "kept\n" and not (tmp_path / "missing").exists()


def test_check_config_passes_plugin_files_it_can_open_and_changes_none(tmp_path: Path) -> None:
    key, profile, api_key, eve = (tmp_path / name for name in ("alice.key", "site.toml", "api.key", "eve.json"))
    key.write_text("k" * 64 + "\n")
    profile.write_text("site = \"campus\"\n")
    api_key.write_text("sk-test\n")
    eve.write_text("{\"event_type\": \"alert\"}\n")
    text = (f"[plugins.eve]\npath = \"{eve}\"\nappend = false\n"
            f"[plugins.ask]\nintents = false\ncloud_url = \"http://127.0.0.1:9\"\napi_key_file = \"{api_key}\"\n"
            f"intent_profile = \"{profile}\"\nrequesters = {{ alice = \"{key}\" }}\n")  # fmt: skip
    result = check_config(tmp_path, text)
    assert result.returncode == 0 and "configuration OK" in result.stdout, result.stderr
    assert eve.read_text() == "{\"event_type\": \"alert\"}\n"  # append = false truncates at run, not here
    new = tmp_path / "new-eve.json"
    result = check_config(tmp_path, f"[plugins.eve]\npath = \"{new}\"\n")
    assert result.returncode == 0 and not new.exists(), result.stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[plugins.intents]\n", "[plugins.intents]: the edge LLM needs torch and transformers, not installed "
                                "(pip install 'netgptd[train]')"),
        ("[plugins.trends]\nforecaster = \"edge_llm\"\n",
         "[plugins.trends] forecaster = \"edge_llm\": the edge LLM needs torch and transformers, not installed "
         "(pip install 'netgptd[train]')"),
        ("[plugins.ask]\n", "[plugins.ask] intents = true: the edge LLM needs torch and transformers, not installed "
                            "(pip install 'netgptd[train]', or set intents = false)"),
        ("[plugins.trends]\n", None),  # auto: the edge LLM if it loads, else a statistical forecaster
        ("[plugins.ask]\nintents = false\n", None),
    ],
)
def test_check_config_knows_which_plugins_need_the_train_extra(text: str, message: str | None, tmp_path: Path) -> None:
    result = check_config(tmp_path, text, env=hide_llm(tmp_path))
    if message is None:
        assert result.returncode == 0 and "configuration OK" in result.stdout, result.stderr
    else:
        assert one_error_line(result) == message


def test_mqtt_names_and_topics_one_pure_check() -> None:
    """The rules check-config and the MQTT plugins share (netgptd.mqtt_names)."""
    check_mqtt("netgpt/{site}/{sensor}/", 30)
    check_mqtt("netgpt/{site}/{sensor}/", 65535, "campus-a", "edge.1")
    for prefix, keepalive, message in [
        ("netgpt/{site}/{host}/", 30, "topic_prefix: only {site} and {sensor} are filled (KeyError('host')"),
        ("netgpt/{site/", 30, "topic_prefix: only {site} and {sensor} are filled"),
        ("a/+/", 30, "topic_prefix: 'a/+/' holds an MQTT wildcard"),
        ("a/", 65536, "keepalive: must be between 0 and 65535 seconds (MQTT's limit), got 65536"),
        ("a/", -1, "keepalive: must be between 0 and 65535"),
    ]:
        with pytest.raises(ValueError) as caught:
            check_mqtt(prefix, keepalive)
        assert str(caught.value).startswith(message)
    with pytest.raises(ValueError, match="holds an MQTT wildcard"):
        check_mqtt("netgpt/{site}/", 30, site="a/#")
    assert name_problem("edge-1.campus_a") is None and name_problem("x" * 64) is None
    assert name_problem("x" * 65) and name_problem("") and name_problem("a b") and name_problem("é")
    assert len(name_problem("s" * 10_000_000) or "") < 200


def test_max_flows_must_fit_in_memory() -> None:
    check_memory(1_000_000, 2 << 30)
    with pytest.raises(ConfigError, match=r"\[flows\] max_flows: 4,000,000 flows take about 3.8 GiB \(~1024 bytes "
                                          r"each\); this machine has 2.0 GiB"):  # fmt: skip
        check_memory(4_000_000, 2 << 30)
