"""Files and folders the daemon makes: private modes at creation, never through a symbolic link.

Outside systemd (which gives the unit ``UMask=0027``) the process umask is
often 022, under which a plain ``open`` or ``mkdir`` leaves the EVE log,
the outbox and the history world-readable. So what is created here gets an
explicit mode: files 0640, folders 0750 (the umask can only narrow them).
What already exists keeps the mode its operator gave it: nothing is chmod-ed.

The last component of a path is opened with ``O_NOFOLLOW``: a daemon
running as root must not append to whatever a planted link points at.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

FILE_MODE = 0o640
DIR_MODE = 0o750


def describe(error: OSError) -> str:
    """An OSError as a short reason, a symbolic link named as such."""
    if error.errno == errno.ELOOP:
        return "is a symbolic link (not followed)"
    return error.strerror or str(error)


def make_dirs(path: Path) -> Path:
    """``mkdir -p`` where every folder created gets DIR_MODE; existing ones stay as they are."""
    missing = []
    for folder in (path, *path.parents):
        if folder.is_dir():
            break
        missing.append(folder)
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=DIR_MODE)
        except FileExistsError:
            if not folder.is_dir():
                raise
    return path


def open_append(path: Path, truncate: bool = False) -> int:
    """A write-only, appending descriptor of ``path`` (made FILE_MODE if new; OSError ELOOP if a link)."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_TRUNC if truncate else 0)
    return os.open(path, flags, FILE_MODE)


def create_file(path: Path) -> Path:
    """Make sure ``path`` is a file of its own before a library opens it (SQLite would make it 0644
    and follow a link); its folders are made as by :func:`make_dirs`."""
    make_dirs(path.parent)
    os.close(open_append(path))
    return path


def read_problem(path: str | Path) -> str | None:
    """Why ``path`` cannot be opened for reading, or None (it is opened and closed, nothing read)."""
    try:
        with open(path, "rb"):
            return None
    except OSError as exc:
        return describe(exc)


def readable(setting: str, path: str) -> str:
    """``path``, if it can be read; else a ValueError "setting: path: reason" (what preflight and plugins say)."""
    problem = read_problem(path)
    if problem:
        raise ValueError(f"{setting}: {path}: {problem}")
    return path


def create_problem(folder: Path) -> str | None:
    """Why no file can be created in ``folder`` (the real test: a read-only mount, ACLs), or None.
    The probe is an unnamed temporary file: it leaves no trace."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            return None
    except OSError as exc:
        return exc.strerror or str(exc)


def append_problem(path: Path) -> str | None:
    """Why :func:`open_append` would fail on ``path``, or None; nothing is created or truncated.
    An existing file is opened for appending (without O_CREAT or O_TRUNC); a new one needs a folder to create it in."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK))
        return None
    except FileNotFoundError:
        pass
    except OSError as exc:
        return describe(exc)
    if not path.parent.is_dir():
        return f"no folder {path.parent}"
    problem = create_problem(path.parent)
    return f"cannot create a file in {path.parent}: {problem}" if problem else None
