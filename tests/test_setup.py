"""setup.sh and README's "Set up and run": each mode installs what it needs, and the commands resolve."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LAB_TOOLS = {"nmap", "hping3", "hydra", "slowhttptest", "openssh-server", "postgresql", "mariadb-server", "mariadb-client",
             "nats-server", "dovecot-imapd", "dovecot-pop3d", "slapd", "ldap-utils", "samba", "smbclient", "chrony",
             "snmpd", "snmp", "inetutils-telnetd", "inetutils-telnet",
             "kamailio", "sipsak", "rabbitmq-server", "amqp-tools", "rsync", "memcached",
             "tftpd-hpa", "tftp-hpa", "freeradius", "freeradius-utils",
             "ngircd", "dante-server", "prosody", "libcoap3-bin", "openvpn"}  # fmt: skip
TEST_TOOLS = LAB_TOOLS | {"tshark", "mosquitto", "prometheus", "libndpi-bin", "python3-venv", "logrotate", "curl"}


def _plan(mode: str) -> dict[str, list[str]]:
    proc = subprocess.run([str(REPO / "setup.sh"), mode], env={**os.environ, "SETUP_PLAN": "1"},
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    plan = dict(line.split(": ", 1) if ": " in line else (line.rstrip(":"), "") for line in proc.stdout.splitlines())
    return {key: value.split() for key, value in plan.items()}


def test_run_installs_no_lab_tools() -> None:
    """The demo needs Python's venv and cargo (the compiled hot path) and nothing else: no scanners, no SSH
    server on a real host."""
    plan = _plan("run")
    assert plan["debian"] == ["python3-venv", "cargo"]
    assert plan["pip"] == ["-e", "."]


def test_test_installs_everything_the_tests_use() -> None:
    plan = _plan("test")
    assert TEST_TOOLS <= set(plan["debian"]), TEST_TOOLS - set(plan["debian"])
    assert plan["pip"] == ["-e", ".[dev,lab,train,llm,central]"]


def _section(title: str) -> str:
    text = (REPO / "README.md").read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def _table_commands() -> list[list[str]]:
    """The subcommand words of every `netgptd ...` in the Commands table's first column."""
    commands = []
    for row in _section("Commands").splitlines():
        if row.startswith("| `netgptd"):
            for code in re.findall(r"`netgptd ([^`]*)`", row.split(" | ")[0]):
                words = []
                for word in code.split():
                    if not re.fullmatch(r"[a-z][a-z-]*", word):
                        break  # an argument (FILE, "SENTENCE", --flag): the subcommand ends here
                    words.append(word)
                commands.append(words)
    return commands


def test_readme_commands_resolve_after_the_setup_lines() -> None:
    """After the README's set-up lines, `netgptd` is on the PATH and every command of its table exists."""
    setup = _section("Set up and run")
    activate = re.search(r"^\. (\.venv/bin/activate)\b", setup, re.MULTILINE)
    assert activate, "README's set-up must say how netgptd gets on the PATH"
    venv = Path(sys.prefix)
    if not (venv / "bin" / "activate").is_file() or not (venv / "bin" / "netgptd").is_file():
        pytest.skip(f"the tests do not run in a venv with netgptd installed ({venv})")
    # A login shell's PATH: netgptd is nowhere on it before the activate line.
    env = {**os.environ, "PATH": "/usr/local/bin:/usr/bin:/bin"}
    env.pop("VIRTUAL_ENV", None)
    assert subprocess.run(["bash", "-c", "command -v netgptd"], env=env, capture_output=True).returncode != 0
    proc = subprocess.run(["bash", "-c", f". {venv}/bin/activate && netgptd --version"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0 and proc.stdout.startswith("netgptd "), proc.stdout + proc.stderr

    from netgptd.cli import build_parser

    commands = _table_commands()
    assert len(commands) >= 10 and ["demo"] in commands and ["trend", "eval"] in commands
    for words in commands:
        with pytest.raises(SystemExit) as done:
            build_parser().parse_args([*words, "--help"])
        assert done.value.code == 0, words
