"""The systemd unit, sysusers and tmpfiles files, checked with systemd's own tools.

``systemd-analyze verify`` loads the unit as PID 1 would and reports what it
cannot use, but it exits 0 for most of it (an unknown key or an unparsable
value is "ignoring"), so every line it prints about our unit counts as a
failure. It also checks that ExecStart= is executable, hence the copy with
ExecStart= pointing at this venv's ``netgptd``. It does not resolve User=
(systemd 252), so the netgptd user need not exist here.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SYSTEMD = REPO / "systemd"
UNIT = SYSTEMD / "netgptd.service"
SYSUSERS = SYSTEMD / "netgptd.sysusers"
TMPFILES = SYSTEMD / "netgptd.tmpfiles"
INSTALLED_EXEC = "/opt/netgptd/venv/bin/netgptd"
MAX_EXPOSURE = 2.0


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not found (systemd tools are needed to check the unit files)")
    return path


def _run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a tool; stdout and stderr together, as a person would read them."""
    return subprocess.run(
        args,
        input=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=120,
        env={**os.environ, "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0"},
    )


def _settings(unit: Path) -> dict[str, list[str]]:
    """Key -> values (in order) of the [Service] section; repeated keys accumulate."""
    settings: dict[str, list[str]] = {}
    section = ""
    for raw in unit.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
        elif section == "[Service]":
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def _verify_copy(tmp_path: Path, edit: tuple[str, str] | None = None) -> Path:
    """The unit with ExecStart= on this venv's netgptd, and ``edit`` (old, new) applied."""
    netgptd = Path(sys.executable).parent / "netgptd"
    if not os.access(netgptd, os.X_OK):
        pytest.skip(f"{netgptd} missing: install the package into the venv (pip install -e .)")
    text = UNIT.read_text()
    assert text.count(f"ExecStart={INSTALLED_EXEC} ") == 1
    text = text.replace(f"ExecStart={INSTALLED_EXEC} ", f"ExecStart={netgptd} ")
    if edit is not None:
        assert edit[0] in text
        text = text.replace(edit[0], edit[1])
    copy = tmp_path / UNIT.name
    copy.write_text(text)
    return copy


def _verify_complaints(unit: Path) -> tuple[int, list[str]]:
    proc = _run(_tool("systemd-analyze"), "verify", "--man=no", str(unit))
    return proc.returncode, [line for line in proc.stdout.splitlines() if UNIT.name in line]


def test_unit_verifies(tmp_path: Path) -> None:
    returncode, complaints = _verify_complaints(_verify_copy(tmp_path))
    assert complaints == []
    assert returncode == 0


@pytest.mark.parametrize(
    "edit",
    [
        ("ProtectSystem=strict", "ProtectSytem=strict"),
        ("RestrictAddressFamilies=AF_PACKET", "RestrictAddressFamilies=AF_PAKET"),
        ("ExecReload=/bin/kill", "ExecReload=/nonexistent/kill"),
    ],
    ids=["unknown-key", "bad-value", "missing-binary"],
)
def test_verify_catches_a_broken_unit(tmp_path: Path, edit: tuple[str, str]) -> None:
    """The check above would notice: mistakes that verify reports with exit status 0 included."""
    returncode, complaints = _verify_complaints(_verify_copy(tmp_path, edit))
    assert complaints or returncode != 0


def test_exposure_score() -> None:
    # --threshold takes tenths in systemd 252 ("2.0" is refused); the score is parsed as well.
    proc = _run(
        _tool("systemd-analyze"), "security", "--offline=true", f"--threshold={round(MAX_EXPOSURE * 10)}",
        "--no-pager", str(UNIT),
    )  # fmt: skip
    match = re.search(r"Overall exposure level for netgptd\.service: (\d+\.\d+)", proc.stdout)
    assert match, proc.stdout[-2000:]
    exposed = "\n".join(line for line in proc.stdout.splitlines() if line.startswith("✗"))
    assert float(match[1]) <= MAX_EXPOSURE, exposed
    assert proc.returncode == 0, proc.stdout[-2000:]


def test_unit_keeps_what_the_daemon_needs() -> None:
    """Hardening must not buy its score with the daemon's own needs."""
    s = _settings(UNIT)
    assert s["Type"] == ["notify"] and s["NotifyAccess"] == ["main"]
    assert s["ExecStart"] == [f"{INSTALLED_EXEC} run --config /etc/netgptd/netgptd.toml"]
    assert s["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert (s["User"], s["Group"]) == (["netgptd"], ["netgptd"])
    assert "DynamicUser" not in s
    for key in ("StateDirectory", "LogsDirectory", "ConfigurationDirectory"):
        assert s[key] == ["netgptd"]
    families = set(" ".join(s["RestrictAddressFamilies"]).split())
    assert families == {"AF_PACKET", "AF_NETLINK", "AF_UNIX", "AF_INET", "AF_INET6"}
    for key in ("AmbientCapabilities", "CapabilityBoundingSet"):
        assert set(" ".join(s[key]).split()) == {"CAP_NET_RAW", "CAP_NET_ADMIN"}, key
    # Capture and the broker need the host's network and real capabilities.
    for key in ("PrivateNetwork", "PrivateUsers", "IPAddressDeny"):
        assert key not in s, key
    # dumpcap calls capset(2) to drop its capabilities; @privileged alone would refuse it.
    assert s["SystemCallFilter"][-1] == "capset"
    # torch's oneDNN JIT (edge LLM) needs W+X memory; ProcSubset=pid hides /proc/cpuinfo from onnxruntime.
    assert "MemoryDenyWriteExecute" not in s
    assert "ProcSubset" not in s


def _passwd(path: Path) -> dict[str, list[str]]:
    return {fields[0]: fields for fields in (line.split(":") for line in path.read_text().splitlines())}


def test_sysusers_creates_user_and_group(tmp_path: Path) -> None:
    tool = _tool("systemd-sysusers")
    if "--dry-run" not in _run(tool, "--help").stdout:
        pytest.skip("this systemd-sysusers has no --dry-run")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    # Config on stdin: with --root= a file argument would be looked up inside the root.
    dry = _run(tool, "--dry-run", f"--root={root}", "-", stdin=SYSUSERS.read_text())
    assert dry.returncode == 0, dry.stdout
    assert "Creating group 'netgptd'" in dry.stdout
    assert "Creating user 'netgptd'" in dry.stdout
    assert not (root / "etc" / "passwd").exists()

    real = _run(tool, f"--root={root}", "-", stdin=SYSUSERS.read_text())
    assert real.returncode == 0, real.stdout
    user = _passwd(root / "etc" / "passwd")["netgptd"]
    group = _passwd(root / "etc" / "group")["netgptd"]
    assert int(user[2]) < 1000, "a system user"
    assert user[3] == group[2], "primary group netgptd"
    assert user[5:] == ["/var/lib/netgptd", "/usr/sbin/nologin"]


def test_tmpfiles_gives_the_config_to_the_group(tmp_path: Path) -> None:
    sysusers, tmpfiles = _tool("systemd-sysusers"), _tool("systemd-tmpfiles")
    if os.geteuid() != 0:
        pytest.skip("systemd-tmpfiles needs root to chown, even under --root=")
    root = tmp_path / "root"
    config = root / "etc" / "netgptd" / "netgptd.toml"
    config.parent.mkdir(parents=True)
    config.write_text("")
    config.chmod(0o644)
    assert _run(sysusers, f"--root={root}", "-", stdin=SYSUSERS.read_text()).returncode == 0
    gid = int(_passwd(root / "etc" / "group")["netgptd"][2])

    proc = _run(tmpfiles, "--create", f"--root={root}", "-", stdin=TMPFILES.read_text())
    assert proc.returncode == 0, proc.stdout
    for path, mode in ((config.parent, 0o750), (config, 0o640)):
        st = path.stat()
        assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (0, gid, mode), path


def _readme_install_block() -> str:
    """README.md's short install: the shell block that creates the user."""
    blocks = re.findall(r"^```sh\n(.*?)^```", (REPO / "README.md").read_text(), re.MULTILINE | re.DOTALL)
    found = [block for block in blocks if "systemd-sysusers" in block]
    assert len(found) == 1, "expected one install block in README.md"
    return found[0]


def _checkout_copy(dest: Path) -> Path:
    """The working tree as a user's checkout (pip writes build/ and *.egg-info into it)."""
    ignore = shutil.ignore_patterns(".git", ".venv", "__pycache__", "build", "*.egg-info", ".pytest_cache", ".hypothesis")
    return Path(shutil.copytree(REPO, dest, ignore=ignore))


# The README's block, literally, as root in a mount namespace where /etc and /opt are overlays on
# a tmpfs: it adds a real user, installs a real venv and a real unit, and none of it outlives the test.
NAMESPACE_SCRIPT = r"""
set -euo pipefail
mount -t tmpfs tmpfs "$SCRATCH"
for d in etc opt; do
  mkdir -p "$SCRATCH/$d-up" "$SCRATCH/$d-work"
  mount -t overlay overlay -o "lowerdir=/$d,upperdir=$SCRATCH/$d-up,workdir=$SCRATCH/$d-work" "/$d"
done
cd "$CHECKOUT"
bash -euo pipefail -c "$BLOCK" >"$LOGS/block.log" 2>&1
echo "config $(stat -c '%U:%G %a' /etc/netgptd/netgptd.toml)"
runuser -u netgptd -- test -r /etc/netgptd/netgptd.toml && echo "user reads config"
runuser -u netgptd -- /usr/bin/dumpcap -v >/dev/null 2>&1 && echo "user runs dumpcap"
systemd-analyze verify --man=no /etc/systemd/system/netgptd.service >"$LOGS/verify.log" 2>&1 && echo "verify exit 0"
"""


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_readme_install_block_works_as_written(tmp_path: Path) -> None:
    """The short install in README.md, run as written, leaves a service its user can start."""
    if os.geteuid() != 0:
        pytest.skip("the install block runs as root (in a private mount namespace)")
    for tool in ("unshare", "runuser", "systemd-sysusers", "systemd-tmpfiles", "systemd-analyze"):
        _tool(tool)
    if not os.access("/usr/bin/dumpcap", os.F_OK):
        pytest.skip("tshark/dumpcap is not installed (the block's prerequisite)")
    scratch, logs = tmp_path / "scratch", tmp_path / "logs"
    scratch.mkdir()
    logs.mkdir()
    # A fresh Debian root's PATH: python3 is /usr/bin/python3, not a test runner's venv or pyenv.
    env = {**os.environ, "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "SCRATCH": str(scratch), "LOGS": str(logs), "BLOCK": _readme_install_block(),
           "CHECKOUT": str(_checkout_copy(tmp_path / "netgptd")), "PIP_CACHE_DIR": str(tmp_path / "pip-cache")}
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "bash", "-c", NAMESPACE_SCRIPT],
                          env=env, capture_output=True, text=True, timeout=840)  # fmt: skip
    block_log = (logs / "block.log").read_text() if (logs / "block.log").exists() else ""
    assert proc.returncode == 0, f"{proc.stderr}\n--- the block's output:\n{block_log[-4000:]}"
    results = proc.stdout.splitlines()
    assert "config root:netgptd 640" in results
    assert "user reads config" in results
    assert "configuration OK" in block_log, "check-config as the netgptd user"
    assert "user runs dumpcap" in results, "the example config captures live through dumpcap"
    complaints = [line for line in (logs / "verify.log").read_text().splitlines() if UNIT.name in line]
    assert complaints == [] and "verify exit 0" in results, complaints
