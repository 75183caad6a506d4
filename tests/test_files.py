"""What the daemon creates outside systemd is private under a 022 umask: folders 0750, files 0640; nothing is chmod-ed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest

from netgptd.config import Settings, override
from netgptd.files import make_dirs
from netgptd.service import state_dir
from netgptd.trend.history import HISTORY_FILE, WindowHistory


@pytest.fixture(autouse=True)
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_state_dir_and_its_missing_parents_are_made_0750(tmp_path: Path) -> None:
    path = state_dir(override(Settings(), sensor__state_dir=str(tmp_path / "var" / "lib" / "netgptd")))
    assert path == tmp_path / "var" / "lib" / "netgptd"
    assert [mode(p) for p in (path, path.parent, path.parent.parent)] == [0o750] * 3
    assert mode(tmp_path) != 0o750, "what existed is left alone"


def test_an_existing_folder_keeps_its_mode(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    folder.mkdir()
    folder.chmod(0o755)
    make_dirs(folder / "inner")
    assert (mode(folder), mode(folder / "inner")) == (0o755, 0o750)


def test_the_trend_history_is_0640(tmp_path: Path) -> None:
    with WindowHistory(tmp_path / "state") as history:
        assert mode(history.path) == 0o640 and history.path.name == HISTORY_FILE
    assert mode(tmp_path / "state") == 0o750
