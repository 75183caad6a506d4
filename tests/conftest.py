"""Shared test set-up: where the capture corpus is, and which of its files are captures.

The corpus (real public captures, see ``../shared/corpus/README.md``) is never
copied into the repository. Tests find it at ``<repo>/../shared/corpus``, or
wherever ``NETGPT_CORPUS`` points, and skip with a reason when it is absent.

Test functions may take these parameters, filled in here at collection time:

``corpus_capture``
    one test per capture file anywhere in the corpus (ids: path inside it);
``ndpi_capture``
    one test per capture of ``ndpi/pcap`` (ids: file name).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest
import structlog

REPO = Path(__file__).resolve().parent.parent
CORPUS_ENV = "NETGPT_CORPUS"

# Every capture in the corpus ends in one of these (suricata-verify's test
# folders hold .pcap and .pcapng files next to test.yaml; nDPI's one .cap is
# a classic pcap). test_corpus_robustness checks that no capture is missed.
CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap")
PCAP_MAGICS = {b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d",
               b"\x34\xcd\xb2\xa1", b"\xa1\xb2\xcd\x34"}  # fmt: skip
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"


def corpus_path() -> Path:
    """Where the corpus should be (it may be absent)."""
    env = os.environ.get(CORPUS_ENV)
    return Path(env).expanduser() if env else REPO.parent / "shared" / "corpus"


def corpus_missing_reason() -> str | None:
    path = corpus_path()
    if path.is_dir():
        return None
    how = f"{CORPUS_ENV}={os.environ[CORPUS_ENV]}" if os.environ.get(CORPUS_ENV) else f"set {CORPUS_ENV} to override"
    return f"capture corpus not found at {path} ({how})"


def starts_like_capture(path: Path) -> bool:
    """Whether the file begins with a pcap or pcapng magic number."""
    with open(path, "rb") as f:
        magic = f.read(4)
    return magic in PCAP_MAGICS or magic == PCAPNG_MAGIC


def capture_files(root: Path) -> list[Path]:
    """Capture files under ``root`` (recursively), sorted for stable test ids: by suffix, and files named
    otherwise (``.dmp``, none) that start like a capture."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.rglob("*") if p.is_file() and (p.suffix.lower() in CAPTURE_SUFFIXES
                                                                 or starts_like_capture(p)))  # fmt: skip


@pytest.fixture(scope="session")
def corpus() -> Path:
    """The corpus folder; the test is skipped where it is absent."""
    reason = corpus_missing_reason()
    if reason:
        pytest.skip(reason)
    return corpus_path()


@pytest.fixture(scope="session")
def corpus_captures(corpus: Path) -> list[Path]:
    """Every capture file of the corpus."""
    files = capture_files(corpus)
    if not files:
        pytest.skip(f"no capture files under {corpus}")
    return files


def _params(root: Path, files: list[Path], id_of) -> list:  # type: ignore[no-untyped-def]
    reason = corpus_missing_reason()
    if reason is None and not files:
        reason = f"no capture files under {root}"
    if reason:
        return [pytest.param(None, id="corpus-missing", marks=pytest.mark.skip(reason=reason))]
    return [pytest.param(p, id=id_of(p)) for p in files]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    root = corpus_path()
    if "corpus_capture" in metafunc.fixturenames:
        files = capture_files(root)
        metafunc.parametrize("corpus_capture", _params(root, files, lambda p: p.relative_to(root).as_posix()))
    if "ndpi_capture" in metafunc.fixturenames:
        folder = root / "ndpi" / "pcap"
        metafunc.parametrize("ndpi_capture", _params(folder, capture_files(folder), lambda p: p.name))


CORPUS_FIXTURES = {"corpus", "corpus_captures", "corpus_capture", "ndpi_capture"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Whatever needs the corpus (directly or through another fixture) carries the ``corpus`` mark."""
    for item in items:
        if CORPUS_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.corpus)


@pytest.fixture(autouse=True)
def _structlog_defaults() -> Iterator[None]:
    """A test that runs the CLI in-process configures structlog (JSON, level
    warning); the next test starts from structlog's defaults again."""
    yield
    structlog.reset_defaults()
