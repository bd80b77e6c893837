"""Export a session: every record as JSON lines, or a terminal session as asciicast v2.

JSON lines are lossless and inert: one object per line, ``ensure_ascii`` so no control
character survives unescaped, bytes as ``{"utf8": …}`` when they decode and
``{"base64": …}`` otherwise.

asciicast files are meant to be played by other tools (asciinema) straight into a terminal,
so their output goes through the same filter as the replayer's own screen
(``replayer.ansi``): colours and cursor movement survive, clipboard writes, title and
hyperlink sequences, and anything that makes a terminal answer do not.

Export files are created new (never overwriting) with mode 0600: they hold what the session
showed, which is as sensitive as the recording.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

from replayer.ansi import TerminalFilter, make_decoder
from replayer.model import SessionModel, field_dict
from replayer.playback import running_max
from replayer.sanitize import clean

_UNSAFE_NAME: Final = re.compile(r"[^A-Za-z0-9._-]")


def jsonable(value: Any) -> Any:
    """A decoded msgpack value as JSON data (depth is bounded by the reader)."""
    if isinstance(value, (bytes, bytearray)):
        raw = bytes(value)
        try:
            return {"utf8": raw.decode("utf-8")}
        except UnicodeDecodeError:
            return {"base64": base64.b64encode(raw).decode("ascii")}
    if isinstance(value, dict):
        return {_key(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)  # JSON has no NaN/Infinity
    return value


def _key(key: Any) -> str:
    if isinstance(key, bytes):
        return key.decode("utf-8", "backslashreplace")
    return str(key)


def jsonl_lines(model: SessionModel) -> Iterator[str]:
    yield _dump({"kind": "header", "payload": jsonable(model.header)})
    for rec in model.records:
        yield _dump({"t": rec.t, "kind": rec.kind, "payload": jsonable(rec.payload)})
    if model.end is not None:
        yield _dump({"kind": "end", "payload": jsonable(model.end)})
    integrity = model.integrity
    yield _dump({
        "kind": "integrity",
        "status": integrity.status,
        "first_bad_frame": integrity.first_bad_frame,
        "message": integrity.message,
        "truncated": model.truncated,
    })


def _dump(obj: dict[str, Any]) -> str:
    return json.dumps(obj, ensure_ascii=True, allow_nan=False, separators=(",", ":"))


def asciicast_lines(model: SessionModel) -> Iterator[str]:
    """asciicast v2: a header line, then ``[time, code, data]`` events."""
    cols, rows = model.terminal_size
    header: dict[str, Any] = {"version": 2, "width": cols, "height": rows,
                              "env": {"TERM": "xterm-256color"},
                              "title": f"wardgate session {clean(model.session_id, 64)}"}
    if model.started is not None:
        header["timestamp"] = int(model.started)
    yield _dump(header)
    out_filter, out_decoder = TerminalFilter(), make_decoder()
    in_filter, in_decoder = TerminalFilter(), make_decoder()
    times = running_max([rec.t for rec in model.records])
    for t, rec in zip(times, model.records, strict=True):
        stamp = round(max(t, 0.0), 6)
        payload = rec.payload
        if rec.kind in ("term_output", "term_input"):
            data = payload.get("data") if isinstance(payload, dict) else payload
            if isinstance(data, str):
                data = data.encode("utf-8", "replace")
            if not isinstance(data, bytes):
                continue
            if rec.kind == "term_output":
                text = out_filter.feed(out_decoder.decode(data))
                code = "o"
            else:
                text = in_filter.feed(in_decoder.decode(data))
                code = "i"
            if text:
                yield _dump_event(stamp, code, text)
        elif rec.kind == "term_size":
            size = payload if isinstance(payload, dict) else {}
            c, r = size.get("cols"), size.get("rows")
            if isinstance(c, int) and isinstance(r, int) and c > 0 and r > 0:
                yield _dump_event(stamp, "r", f"{min(c, 500)}x{min(r, 200)}")
        elif rec.kind == "exec":
            command = clean(payload.get("command") if isinstance(payload, dict) else payload, 200)
            action = field_dict(payload, "decision").get("action")
            label = f"exec: {command}" + (f" ({clean(action, 16)})" if action else "")
            yield _dump_event(stamp, "m", label)


def _dump_event(t: float, code: str, data: str) -> str:
    return json.dumps([t, code, data], ensure_ascii=True)


def export_name(model: SessionModel, suffix: str) -> str:
    stem = _UNSAFE_NAME.sub("_", model.path.stem)[:120].strip("._") or "session"
    return stem + suffix


def _create(directory: Path, name: str) -> tuple[Path, int]:
    directory.mkdir(parents=True, exist_ok=True)
    base, dot, ext = name.rpartition(".")
    for n in range(1000):
        candidate = directory / (name if n == 0 else f"{base}-{n}{dot}{ext}")
        try:
            fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            continue
        return candidate, fd
    raise OSError(f"no free export file name for {name} in {directory}")


def _write(directory: Path, name: str, lines: Iterator[str]) -> Path:
    path, fd = _create(directory, name)
    with os.fdopen(fd, "w", encoding="ascii", newline="\n") as out:
        for line in lines:
            out.write(line)
            out.write("\n")
    return path


def export_jsonl(model: SessionModel, directory: Path) -> Path:
    return _write(directory, export_name(model, ".jsonl"), jsonl_lines(model))


def export_asciicast(model: SessionModel, directory: Path) -> Path:
    """Raises ValueError for a session without terminal output."""
    if not model.is_terminal:
        raise ValueError("this session has no terminal output to export as asciicast")
    return _write(directory, export_name(model, ".cast"), asciicast_lines(model))
