"""Make recorded values safe to show: no control sequence, no markup, bounded size.

Everything a recording holds was typed or returned by someone the auditor does not trust. A
raw ESC in an identity, a statement or a row would be written by Textual straight to the
auditor's terminal, where OSC 52 can fill the clipboard, CSI 21t can make the terminal type a
reply, and so on. So every recorded string goes through :func:`clean` before it reaches a
widget, and widgets receive ``rich.text.Text`` objects, never markup strings: ``[red]`` in a
statement stays the five characters it is.

Control characters become visible stand-ins (``␛`` for ESC, ``<U+202E>`` for a bidi
override) so the auditor sees that something was there rather than nothing.
"""

from __future__ import annotations

import math
import unicodedata
from typing import Any

from rich.style import Style
from rich.text import Text

# Sizes shown before "…" (the full value stays in the recording and in exports).
CELL_LIMIT = 200  # one table cell
LINE_LIMIT = 400  # one summary line
DETAIL_LIMIT = 20_000  # one value in the detail pane

_ELLIPSIS_STYLE = Style(dim=True, italic=True)

# Characters that change how the rest of a line is drawn without being visible themselves.
# Zero-width joiner (U+200D) is kept: emoji sequences need it and it moves nothing.
_KEEP_FORMAT = {"\u200d"}


def _stand_in(ch: str) -> str:
    code = ord(ch)
    if code < 0x20:
        return chr(0x2400 + code)  # Control Pictures block: ␀ … ␟ (␛ for ESC)
    if code == 0x7F:
        return "\u2421"  # ␡
    return f"<U+{code:04X}>"


def _needs_stand_in(ch: str) -> bool:
    code = ord(ch)
    if code < 0x20 or 0x7F <= code <= 0x9F:
        return True
    if code < 0xA0:
        return False
    # Cf: format (bidi overrides, zero-width space, BOM); Cs: lone surrogates from
    # surrogateescape; Zl/Zp: line and paragraph separators (they break lines in some terminals).
    return unicodedata.category(ch) in {"Cf", "Cs", "Zl", "Zp", "Co"} and ch not in _KEEP_FORMAT


def _truncate(raw: str, limit: int) -> tuple[str, int]:
    if len(raw) <= limit:
        return raw, 0
    return raw[:limit], len(raw) - limit


def to_str(value: Any, limit: int) -> tuple[str, int]:
    """A bounded string form of ``value`` and how many characters were cut.

    Bytes are decoded as UTF-8 (undecodable bytes become ``\\xNN``); only a prefix is decoded,
    so a 10 MB value costs no more than a short one.
    """
    if isinstance(value, str):
        return _truncate(value, limit)
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value[: limit * 4 + 4])
        text = raw.decode("utf-8", "backslashreplace")
        text, cut = _truncate(text, limit)
        rest = len(value) - len(raw)
        return text, cut + max(rest, 0)
    if value is None:
        return "", 0
    if isinstance(value, bool):
        return ("true" if value else "false"), 0
    if isinstance(value, (int, float)):
        return _truncate(repr(value), limit)
    return _truncate(compact(value, limit + 1), limit)


def clean(value: Any, limit: int = LINE_LIMIT, *, multiline: bool = False) -> str:
    """``value`` as a string with every control character replaced by a visible stand-in.

    With ``multiline`` newlines and tabs survive (statement bodies, pretty JSON); otherwise
    they are shown as ``␊``/``␉`` so one value is one line.
    """
    text, cut = to_str(value, limit)
    out: list[str] = []
    for ch in text:
        if multiline and ch in "\n\t":
            out.append("    " if ch == "\t" else ch)
        elif _needs_stand_in(ch):
            out.append(_stand_in(ch))
        else:
            out.append(ch)
    if cut:
        out.append(f"… (+{cut} more)")
    return "".join(out)


def safe_text(
    value: Any,
    limit: int = LINE_LIMIT,
    *,
    style: str | Style = "",
    multiline: bool = False,
    count_cut: bool = True,
    end: str = "",
) -> Text:
    """A ``Text`` holding the cleaned value; never parsed as markup.

    A value longer than ``limit`` ends in ``…`` and, with ``count_cut``, how much was cut.
    ``end`` is "" for pieces appended to other text and table cells; a ``Text`` that stands
    as a line of its own needs ``end="\n"`` (Textual drops an unterminated last line).
    """
    text, cut = to_str(value, limit)
    body = clean(text, len(text) + 1, multiline=multiline)
    result = Text(body, style=style, end=end, no_wrap=not multiline)
    if cut:
        result.append(f"… (+{cut} more)" if count_cut else "…", style=_ELLIPSIS_STYLE)
    return result


def clean_cell_char(data: str) -> str:
    """One terminal cell from pyte: keep it if printable, else a replacement character."""
    if not data:
        return data
    if any(_needs_stand_in(ch) for ch in data):
        return "\ufffd"
    return data


def compact(value: Any, limit: int) -> str:
    """A one-line, JSON-like rendering of any decoded msgpack value, at most ``limit`` chars.

    Iterative with an output budget: a million-element list costs ``limit`` steps, and depth
    is already capped by the reader.
    """
    parts: list[str] = []
    size = 0
    # A stack of pending tokens: values to render or literal strings to emit.
    stack: list[tuple[bool, Any]] = [(False, value)]
    while stack and size <= limit:
        literal, item = stack.pop()
        if literal:
            piece = item
        elif isinstance(item, dict):
            entries: list[tuple[bool, Any]] = [(True, "{")]
            for n, (key, val) in enumerate(item.items()):
                if n:
                    entries.append((True, ", "))
                entries.append((False, key))
                entries.append((True, ": "))
                entries.append((False, val))
                if n > limit:
                    break
            entries.append((True, "}"))
            stack.extend(reversed(entries))
            continue
        elif isinstance(item, (list, tuple)):
            entries = [(True, "[")]
            for n, val in enumerate(item):
                if n:
                    entries.append((True, ", "))
                entries.append((False, val))
                if n > limit:
                    break
            entries.append((True, "]"))
            stack.extend(reversed(entries))
            continue
        elif isinstance(item, str):
            piece = repr(item[: limit + 1])
        elif isinstance(item, (bytes, bytearray)):
            piece = repr(bytes(item[: limit + 1]))
        else:
            piece = repr(item)[: limit + 1]
        parts.append(piece)
        size += len(piece)
    text = "".join(parts)
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover - loop always returns


def format_offset(seconds: float) -> str:
    """Relative session time as ``mm:ss.mmm`` (``h:mm:ss.mmm`` past an hour)."""
    if not math.isfinite(seconds):
        return "?"
    sign = "-" if seconds < 0 else ""
    millis = round(abs(seconds) * 1000)
    hours, rem = divmod(millis, 3_600_000)
    minutes, rem = divmod(rem, 60_000)
    secs, ms = divmod(rem, 1000)
    if hours:
        return f"{sign}{hours}:{minutes:02d}:{secs:02d}.{ms:03d}"
    return f"{sign}{minutes:02d}:{secs:02d}.{ms:03d}"
