"""setup.cfg as setuptools reads it: every shipped file installed, no warning per data folder.

The shipped models live in folders without ``__init__.py``; undeclared, setuptools
prints a 40-line "Package would be ignored" warning for each on every install.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.timeout(120)


def _shipped_data() -> set[str]:
    """Tracked files of the packages that are not Python, relative to their source root."""
    proc = subprocess.run(["git", "ls-files", "daemon", "plugins"], cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"not a git checkout: {proc.stderr.strip()}")
    files = {line.split("/", 1)[1] for line in proc.stdout.splitlines() if not line.endswith(".py")}
    assert files, "expected the shipped models among the tracked files"
    return files


def test_build_installs_every_data_file_without_warnings(tmp_path: Path) -> None:
    build = tmp_path / "build"
    # build_py is what both a wheel and an editable install run over the package list.
    proc = subprocess.run(
        [sys.executable, "-c", "from setuptools import setup; setup()", "build_py", "-d", str(build),
         "egg_info", "--egg-base", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    output = proc.stdout + proc.stderr
    assert "would be ignored" not in output, output[-3000:]
    installed = {str(p.relative_to(build)) for p in build.rglob("*") if p.is_file() and p.suffix != ".py"}
    assert _shipped_data() <= installed, sorted(_shipped_data() - installed)
