"""Push-style NMEA line framing on raw serial bytes. Pure: no I/O, no NMEA decoding.

Rule: a line ends at CR or LF; the sentence candidate is the line from its **last** ``$``.
NMEA never puts ``$`` inside a sentence, so whatever precedes the last ``$`` is junk
(line noise, a merged partial sentence, or UBX binary, which may itself contain ``$``).
Taking the first ``$`` instead would keep a UBX ``$`` byte and lose the real sentence.
A line with no ``$`` at all is reported as ``non_nmea`` unless it is blank, or as ``no_dollar``
when it looks like a sentence that lost its ``$`` to line noise (a talker and type followed by a
comma, or a trailing ``*hh``), so the epoch it belonged to is known to be incomplete.
Buffers are bounded: a candidate longer than ``max_line`` bytes is dropped (``too_long``),
and junk without any ``$`` is never kept beyond ``max_line`` bytes.
"""

from __future__ import annotations

import re

from common.errors import ParseError

MAX_LINE = 256
"""Longest sentence accepted (bytes). NMEA 0183 allows 82; u-blox/GSV extensions stay well under 256."""

_LINE_END = re.compile(rb"[\r\n]")
_DAMAGED = re.compile(rb"[A-Z]{5},|,[^,]*\*[0-9A-Fa-f]{2}\s*$")
"""A line that looks like an NMEA sentence whose ``$`` was lost."""


class LineSplitter:
    """Feed bytes with ``push``; get complete sentence candidates (bytes from ``$``) and ParseErrors."""

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self.max_line = max_line
        self._buf = bytearray()
        self._dropped = ""
        """What ``_bound`` dropped from the current line: "", "junk" or "too_long"."""

    def push(self, data: bytes) -> list[bytes | ParseError]:
        """Add ``data``; return every line completed by it, in order."""
        out: list[bytes | ParseError] = []
        first, *rest = _LINE_END.split(data)
        self._buf += first
        for part in rest:
            self._bound()
            self._end_line(out)
            self._buf += part
        self._bound()
        return out

    def reset(self) -> None:
        """Forget a partial line (the link was lost: its rest will never come)."""
        self._buf.clear()
        self._dropped = ""

    def _end_line(self, out: list[bytes | ParseError]) -> None:
        line = bytes(self._buf)
        self._buf.clear()
        dropped, self._dropped = self._dropped, ""
        dollar = line.rfind(b"$")
        if dollar < 0:
            if dropped == "too_long":
                out.append(ParseError(f"sentence longer than {self.max_line} bytes", "too_long"))
            elif _DAMAGED.search(line):
                out.append(ParseError(f"sentence without its '$': {_show(line)}", "no_dollar"))
            elif dropped or line.strip():
                out.append(ParseError(f"non-NMEA line {_show(line)}", "non_nmea"))
            return
        if len(line) - dollar > self.max_line:
            out.append(ParseError(f"sentence longer than {self.max_line} bytes", "too_long"))
            return
        out.append(line[dollar:])

    def _bound(self) -> None:
        """Keep the unfinished line under ``max_line`` bytes; the result does not depend on chunking.

        Only the part from the last ``$`` can become a sentence, so everything before it goes. If
        that part is already too long (or there is no ``$``), the whole buffer goes and the line
        will end as ``too_long`` (or ``non_nmea``) unless a later ``$`` starts a new candidate.
        """
        if len(self._buf) <= self.max_line:
            return
        dollar = self._buf.rfind(b"$")
        if dollar >= 0 and len(self._buf) - dollar <= self.max_line:
            del self._buf[:dollar]
            self._dropped = self._dropped or "junk"
            return
        self._dropped = "too_long" if dollar >= 0 else self._dropped or "junk"
        self._buf.clear()


def _show(line: bytes) -> str:
    return repr(line[:40]) + ("..." if len(line) > 40 else "")
