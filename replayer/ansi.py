"""Filter recorded terminal output down to sequences that only draw.

Recorded SSH output is fed to pyte for display and written to asciicast files for other
players. Either way it must not be able to reach out of the screen: set the clipboard
(OSC 52), set or report the window title (OSC 0/2, CSI 21t), plant hyperlinks (OSC 8), make
the terminal type a reply (DSR CSI 6n, DA CSI c, DECRQM, DECID ESC Z, DCS requests), resize
or move the window (CSI t, DECCOLM), or turn on mouse reporting. This module keeps what
draws text (SGR colours, cursor movement, erasing, scroll regions, the alternate screen) and
drops everything else, including every OSC, DCS, SOS, PM and APC string and every C1 control.

It works on decoded text: terminals in UTF-8 mode act on C1 controls encoded as U+0080 …
U+009F, and invalid bytes have already become U+FFFD, which draws nothing harmful.

The filter is a state machine fed chunk by chunk, because one escape sequence can span two
records. Sequences longer than the bounds below are dropped whole.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable
from typing import Final

ESC: Final = "\x1b"
BEL: Final = "\x07"
MAX_CSI: Final = 64  # chars of one CSI sequence, parameters included
MAX_STRING: Final = 65_536  # chars of one OSC/DCS/… string before it is abandoned

# C0 controls that only move the cursor: BS, HT, LF, VT, FF, CR.
_C0_KEEP: Final = frozenset("\b\t\n\x0b\x0c\r")
# ESC <final>: save/restore cursor, index, next line, reverse index, full reset, keypad modes.
_ESC_KEEP: Final = frozenset("78DEMc=>")
# ESC ( / ) <final>: G0/G1 charset (ASCII, UK, DEC line drawing); TUIs draw boxes with it.
_CHARSET_FINALS: Final = frozenset("B0A")
# CSI finals that draw: cursor movement, erase, insert/delete, scroll, margins, SGR.
_CSI_KEEP: Final = frozenset("@ABCDEFGHIJKLMPSTXZ`adefgmrsu")
# Private modes (CSI ? n h/l) that change only how the screen is drawn.
_PRIVATE_MODES_KEEP: Final = frozenset(
    {"1", "5", "6", "7", "12", "25", "47", "1047", "1048", "1049", "2004"}
)
# Public modes (CSI n h/l): insert/replace, line feed/new line.
_MODES_KEEP: Final = frozenset({"4", "20"})
# Bidi overrides and isolates reorder what the auditor reads; show a replacement instead.
_BIDI: Final = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")

_GROUND, _ESCAPE, _CHARSET, _CSI, _CSI_IGNORE, _STRING, _STRING_ESC, _ESC_INTERMEDIATE = range(8)


class TerminalFilter:
    """Stateful filter: ``feed(text)`` returns the part of ``text`` that is safe to draw."""

    def __init__(self) -> None:
        self._state = _GROUND
        self._seq: list[str] = []  # the CSI sequence being collected
        self._string_len = 0
        self.dropped = 0  # sequences removed, for the UI to mention

    @property
    def in_ground(self) -> bool:
        """No sequence is half-read: state can be copied without losing a partial sequence."""
        return self._state == _GROUND

    def reset(self) -> None:
        self._state = _GROUND
        self._seq = []
        self._string_len = 0

    def feed(self, text: str) -> str:
        out: list[str] = []
        append = out.append
        for ch in text:
            state = self._state
            if state == _GROUND:
                code = ord(ch)
                if code >= 0x20 and code != 0x7F and not 0x80 <= code <= 0x9F:
                    append("\ufffd" if ch in _BIDI else ch)
                elif ch == ESC:
                    self._state = _ESCAPE
                elif ch in _C0_KEEP:
                    append(ch)
                elif ch == "\x9b":  # C1 CSI
                    self._begin_csi()
                elif ch in "\x90\x98\x9d\x9e\x9f":  # C1 DCS, SOS, OSC, PM, APC
                    self._begin_string()
                else:
                    self.dropped += 1  # BEL, SO/SI, NUL, DEL, other C1: nothing to draw
            elif state == _ESCAPE:
                self._escape(ch, append)
            elif state == _CHARSET:
                if ch in _CHARSET_FINALS:
                    append(ESC + self._seq[0] + ch)
                else:
                    self.dropped += 1
                self._seq = []
                self._state = _GROUND
            elif state == _ESC_INTERMEDIATE:
                # ESC <intermediates> <final> (e.g. ESC # 8, ESC % G): all dropped.
                if not 0x20 <= ord(ch) <= 0x2F:
                    self.dropped += 1
                    self._state = _GROUND
            elif state == _CSI:
                self._csi(ch, append)
            elif state == _CSI_IGNORE:
                # An over-long CSI is consumed up to its final byte without being stored.
                if not 0x20 <= ord(ch) <= 0x3F:
                    self._state = _GROUND
            elif state == _STRING:
                self._string_len += 1
                if ch == BEL or ch == "\x9c":
                    self._state = _GROUND
                elif ch == ESC:
                    self._state = _STRING_ESC
                elif self._string_len > MAX_STRING:
                    # An unterminated string would swallow the rest of the session.
                    self._state = _GROUND
            else:  # _STRING_ESC
                # ESC \ is ST. Any other ESC ends the string too (as in xterm); the ESC's
                # sequence is then read normally.
                if ch == "\\":
                    self._state = _GROUND
                else:
                    self._state = _ESCAPE
                    self._escape(ch, append)
        return "".join(out)

    def _escape(self, ch: str, append: Callable[[str], None]) -> None:
        if ch == "[":
            self._begin_csi()
        elif ch in "]PX^_":  # OSC, DCS, SOS, PM, APC
            self._begin_string()
        elif ch in "()":
            self._seq = [ch]
            self._state = _CHARSET
        elif ch in _ESC_KEEP:
            append(ESC + ch)
            self._state = _GROUND
        elif ch == ESC:
            self.dropped += 1  # ESC ESC: the first one introduced nothing
            self._state = _ESCAPE
        elif 0x20 <= ord(ch) <= 0x2F:
            self._state = _ESC_INTERMEDIATE
        else:
            self.dropped += 1  # ESC Z (DECID asks for a reply), ESC #, unknown finals
            self._state = _GROUND

    def _begin_csi(self) -> None:
        self._seq = []
        self._state = _CSI

    def _begin_string(self) -> None:
        self.dropped += 1
        self._string_len = 0
        self._state = _STRING

    def _csi(self, ch: str, append: Callable[[str], None]) -> None:
        code = ord(ch)
        if 0x20 <= code <= 0x3F:  # parameter and intermediate bytes
            self._seq.append(ch)
            if len(self._seq) > MAX_CSI:
                self.dropped += 1
                self._seq = []
                self._state = _CSI_IGNORE
            return
        self._state = _GROUND
        if ch == ESC:
            self.dropped += 1
            self._state = _ESCAPE
            return
        if not 0x40 <= code <= 0x7E:
            self.dropped += 1  # a control inside CSI aborts it
            return
        params = "".join(self._seq)
        self._seq = []
        if _csi_allowed(params, ch):
            append(ESC + "[" + params + ch)
        else:
            self.dropped += 1


def _csi_allowed(params: str, final: str) -> bool:
    if any(c in params for c in " !\"#$%&'*+,-./"):
        return False  # intermediates: DECSCUSR, DECRQM ($p), DECSTR (!p) … none draw text
    if final in "hl":
        private = params.startswith("?")
        modes = params[1:] if private else params
        allowed = _PRIVATE_MODES_KEEP if private else _MODES_KEEP
        return bool(modes) and all(m in allowed for m in modes.split(";"))
    if params.startswith(("?", ">", "=", "<")):
        return False  # private variants of drawing finals are requests (CSI > c, CSI ? 6 n)
    return final in _CSI_KEEP


def make_decoder() -> codecs.IncrementalDecoder:
    """UTF-8 decoder that survives a character split across records."""
    return codecs.getincrementaldecoder("utf-8")("replace")


def sanitize_bytes(data: bytes) -> str:
    """One-shot filter for a complete byte string (tests, previews)."""
    filt = TerminalFilter()
    return filt.feed(make_decoder().decode(data, final=True))
