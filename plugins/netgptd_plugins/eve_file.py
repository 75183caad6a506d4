"""EVE file sink: every event as one JSON line, to a file or to stdout ('-')."""

from __future__ import annotations

import sys
from typing import Any

from netgptd.eve import EveWriter
from netgptd.plugin_host import hookimpl


class EveFilePlugin:
    """Appends by default, as Suricata does with eve.json; ``append=False`` starts afresh."""

    def __init__(self, path: str = "-", append: bool = True) -> None:
        if path == "-":
            self._stream, self._owned = sys.stdout, False
        else:
            try:
                self._stream, self._owned = open(path, "a" if append else "w", encoding="utf-8"), True
            except OSError as exc:
                raise ValueError(f"cannot open {path}: {exc.strerror}") from None
        self.writer = EveWriter(self._stream)

    @hookimpl
    def netgpt_event(self, event: dict[str, Any]) -> None:
        self.writer.write(event)

    @hookimpl
    def netgpt_close(self) -> None:
        self._stream.flush()
        if self._owned:
            self._stream.close()
