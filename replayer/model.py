"""A recording turned into what the session view shows: a summary and a timeline of events.

Nothing here trusts a payload's shape. A recording that verifies was still written from what
an agent sent, and a tampered or hand-made one can hold anything the reader's limits allow:
every field is read through the ``field_*`` helpers, which fall back to an empty value
instead of raising.

Record kinds understood (see docs/replayer.md for the shapes):

* PostgreSQL connector: ``query``, ``result``, ``error``, ``disconnect``;
* approvals (gateway/session.py): ``review_requested``, ``review_approved``,
  ``review_denied``, ``review_timed_out``, ``review_cancelled``, ``review_refused``,
  ``review_approved_expired_token``, ``grant_used``;
* HTTP (provisional): ``http_request``, ``http_response``;
* terminal sessions (provisional): ``term_size``, ``term_output``, ``term_input``, ``exec``.

Any other kind is listed in the timeline with a compact rendering of its payload.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any, Final

from gateway.recording.reader import Integrity, Record, Recording
from replayer.ansi import sanitize_bytes
from replayer.sanitize import clean, compact, human_bytes
from replayer.terminal import TermChunk, clamp_size

COMMAND_KINDS: Final = frozenset({"query", "http_request", "exec"})
# Approval records and the state each one puts a review in (shown in the decision column).
REVIEW_KINDS: Final = {
    "review_requested": "requested",
    "review_approved": "approved",
    "review_denied": "denied",
    "review_timed_out": "timed out",
    "review_cancelled": "cancelled",
    "review_refused": "refused",
    "review_approved_expired_token": "expired",
}
# Records that belong to the command recorded after them: a held statement is recorded (with
# its final decision) only once its review has ended.
PRELUDE_KINDS: Final = frozenset(REVIEW_KINDS) | {"grant_used"}
OUTPUT_MERGE_GAP: Final = 0.5  # seconds: output closer than this is one timeline row
OUTPUT_MERGE_BYTES: Final = 64 * 1024
_CONTROLS_TO_SPACE: Final = {c: " " for c in range(0x20)}
MAX_EVENTS: Final = 200_000  # timeline rows; records past this are not listed (see the view)


def field_dict(value: Any, key: str) -> dict[str, Any]:
    found = value.get(key) if isinstance(value, dict) else None
    return found if isinstance(found, dict) else {}


def field_list(value: Any, key: str) -> list[Any]:
    found = value.get(key) if isinstance(value, dict) else None
    return found if isinstance(found, list) else []


def field_str(value: Any, key: str, limit: int = 400) -> str:
    """A cleaned, bounded string (empty when absent); numbers are shown as numbers."""
    found = value.get(key) if isinstance(value, dict) else None
    if found is None or isinstance(found, (dict, list)):
        return ""
    return clean(found, limit)


def field_int(value: Any, key: str) -> int | None:
    found = value.get(key) if isinstance(value, dict) else None
    if isinstance(found, bool) or not isinstance(found, int):
        return None
    return found


def field_float(value: Any, key: str) -> float | None:
    found = value.get(key) if isinstance(value, dict) else None
    if isinstance(found, bool) or not isinstance(found, (int, float)):
        return None
    number = float(found)
    return number if math.isfinite(number) else None


def decision_of(payload: Any) -> str | None:
    """``allow``/``deny``/``review`` when the record carries a decision, else None."""
    action = field_dict(payload, "decision").get("action")
    if isinstance(action, str) and action in ("allow", "deny", "review"):
        return action
    return None


def approvers(payload: Any) -> list[str]:
    """Who approved, from ``review_approved``'s ``approvers`` (maps or plain names)."""
    out: list[str] = []
    for item in field_list(payload, "approvers")[:20]:
        name = field_str(item, "subject", 64) if isinstance(item, dict) else clean(item, 64)
        if name:
            out.append(name)
    return out


def format_started(started: float | None) -> str:
    if started is None:
        return "?"
    try:
        return datetime.fromtimestamp(started, UTC).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, OSError, ValueError):
        return "?"


@dataclass(frozen=True, slots=True)
class Event:
    """One timeline row: a record, or several merged terminal output records."""

    index: int
    t: float  # time of the first record
    t_end: float  # time of the last record
    kind: str  # the record kind ("output" for merged term_output)
    summary: str  # cleaned, one line
    decision: str | None  # allow/deny/review, or a review's state
    first: int  # records[first:last] belong to this event
    last: int

    @property
    def is_command(self) -> bool:
        return self.kind in COMMAND_KINDS


@dataclass
class SessionModel:
    path: Path
    header: dict[str, Any]
    records: list[Record]
    end: dict[str, Any] | None
    integrity: Integrity
    truncated: bool
    events: list[Event] = field(default_factory=list)
    terminal: list[TermChunk] = field(default_factory=list)
    terminal_size: tuple[int, int] = (80, 24)
    events_dropped: int = 0

    @property
    def session_id(self) -> str:
        return field_str(self.header, "session_id", 128) or "?"

    @property
    def identity(self) -> dict[str, Any]:
        return field_dict(self.header, "identity")

    @property
    def target(self) -> dict[str, Any]:
        return field_dict(self.header, "target")

    @property
    def protocol(self) -> str:
        return field_str(self.header, "protocol", 32) or field_str(self.target, "protocol", 32)

    @property
    def started(self) -> float | None:
        return field_float(self.header, "started")

    @property
    def is_terminal(self) -> bool:
        return bool(self.terminal)

    @property
    def duration(self) -> float:
        if not self.records:
            return 0.0
        return max(r.t for r in self.records)

    @cached_property
    def command_indices(self) -> list[int]:
        """Indices of command events, ascending (computed once: the status bar asks often)."""
        return [e.index for e in self.events if e.is_command]

    def counts(self) -> tuple[int, int, int]:
        """(commands, denied, reviewed) as recorded."""
        commands = denied = held = 0
        reviews: set[str] = set()
        for rec in self.records:
            if rec.kind in COMMAND_KINDS:
                commands += 1
                action = decision_of(rec.payload)
                if action == "deny":
                    denied += 1
                elif action == "review":
                    held += 1
            elif rec.kind == "review_requested":
                reviews.add(field_str(rec.payload, "review", 64) or f"review@{rec.t}")
        # A held command and its review records describe one review: count the larger side.
        return commands, denied, max(held, len(reviews))

    def prelude(self, event: Event) -> list[Record]:
        """Approval records just before a command: its review (requested, then decided)."""
        out: list[Record] = []
        for rec in reversed(self.records[max(0, event.first - 1000) : event.first]):
            if rec.kind not in PRELUDE_KINDS:
                break
            out.append(rec)
        out.reverse()
        return out

    def related(self, event: Event) -> list[Record]:
        """The records that follow a command up to the next command or review: result,
        error, http_response. They belong to it in the detail pane."""
        out: list[Record] = []
        for rec in self.records[event.last : event.last + 1000]:
            if (rec.kind in COMMAND_KINDS or rec.kind in PRELUDE_KINDS
                    or rec.kind.startswith("term_")):
                break
            out.append(rec)
        return out


def build_model(path: Path, recording: Recording) -> SessionModel:
    model = SessionModel(
        path=path,
        header=recording.header if isinstance(recording.header, dict) else {},
        records=recording.records,
        end=recording.end,
        integrity=recording.integrity,
        truncated=recording.truncated,
    )
    _build_terminal(model)
    _build_events(model)
    return model


def _build_terminal(model: SessionModel) -> None:
    size: tuple[int, int] | None = None
    chunks: list[TermChunk] = []
    for rec in model.records:
        if rec.kind == "term_size":
            new = clamp_size(
                rec.payload.get("cols") if isinstance(rec.payload, dict) else None,
                rec.payload.get("rows") if isinstance(rec.payload, dict) else None,
            )
            if new is None:
                continue
            if size is None and not any(c.op == "o" for c in chunks):
                size = new
            chunks.append(TermChunk(rec.t, "r", b"", new))
        elif rec.kind == "term_output":
            data = rec.payload.get("data") if isinstance(rec.payload, dict) else rec.payload
            if isinstance(data, str):
                data = data.encode("utf-8", "replace")
            if isinstance(data, bytes) and data:
                chunks.append(TermChunk(rec.t, "o", data, (0, 0)))
    if any(c.op == "o" for c in chunks):
        model.terminal = chunks
        model.terminal_size = size or (80, 24)


def _build_events(model: SessionModel) -> None:
    events: list[Event] = []
    records = model.records
    i = 0
    while i < len(records):
        if len(events) >= MAX_EVENTS:
            model.events_dropped = len(records) - i
            break
        rec = records[i]
        if rec.kind == "term_output":
            j = i + 1
            size = _data_len(rec.payload)
            while (
                j < len(records)
                and records[j].kind == "term_output"
                and records[j].t - records[j - 1].t <= OUTPUT_MERGE_GAP
                and size < OUTPUT_MERGE_BYTES
            ):
                size += _data_len(records[j].payload)
                j += 1
            events.append(
                Event(len(events), rec.t, records[j - 1].t, "output",
                      f"{human_bytes(size)}  {_preview(rec.payload)}", None, i, j)
            )
            i = j
            continue
        verdict = REVIEW_KINDS.get(rec.kind) or decision_of(rec.payload)
        events.append(
            Event(len(events), rec.t, rec.t, rec.kind, summarize(rec), verdict, i, i + 1)
        )
        i += 1
    model.events = events


def _data_len(payload: Any) -> int:
    data = payload.get("data") if isinstance(payload, dict) else payload
    return len(data) if isinstance(data, (bytes, str)) else 0


def _preview(payload: Any) -> str:
    data = payload.get("data") if isinstance(payload, dict) else payload
    if isinstance(data, str):
        data = data.encode("utf-8", "replace")
    if not isinstance(data, bytes):
        return ""
    # Only the start is looked at; escape sequences are removed, then cursor controls.
    text = sanitize_bytes(data[:2048])
    text = _strip_sequences(text).translate(_CONTROLS_TO_SPACE)
    return clean(" ".join(text.split()), 120)


def _strip_sequences(text: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\x1b":
            i += 1
            if i < len(text) and text[i] == "[":
                i += 1
                while i < len(text) and not "\x40" <= text[i] <= "\x7e":
                    i += 1
            i += 1
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def summarize(rec: Record) -> str:
    """One line for the timeline."""
    p = rec.payload
    kind = rec.kind
    if kind == "query":
        sql = field_str(p, "sql", 300)
        statement = field_str(p, "statement", 64)
        return f"{sql}" + (f"  [{statement}]" if statement else "")
    if kind == "result":
        tag = field_str(p, "tag", 64)
        rows = field_int(p, "row_count")
        masked = field_int(p, "masked_rows") or 0
        extra = f", {masked} masked" if masked else ""
        return f"{tag or 'result'}" + (f" ({rows} rows{extra})" if rows is not None else "")
    if kind == "error":
        return f"{field_str(p, 'sqlstate', 16)} {field_str(p, 'message', 300)}".strip()
    if kind in REVIEW_KINDS:
        review = field_str(p, "review", 64)
        if kind == "review_requested":
            return f"{review}: {field_str(p, 'sql', 300)}"
        if kind in ("review_approved", "review_approved_expired_token"):
            return f"{review} by {', '.join(approvers(p)) or '?'}"
        if kind == "review_denied":
            return f"{review} by {field_str(p, 'by', 64)}: {field_str(p, 'reason', 200)}"
        if kind == "review_timed_out":
            return f"{review} after {field_str(p, 'after', 32)} s"
        return f"{review} {field_str(p, 'reason', 300)}".strip()
    if kind == "grant_used":
        return (f"grant {field_str(p, 'grant', 64)} ({field_str(p, 'grant_id', 64)}) approved "
                f"by {field_str(p, 'approved_by', 64) or '?'}, until "
                f"{field_str(p, 'expires_at', 40)}")
    if kind == "http_request":
        return f"{field_str(p, 'method', 16)} {field_str(p, 'target', 300)}"
    if kind == "http_response":
        return f"{field_int(p, 'status') or '?'} {field_str(p, 'reason', 64)}".strip()
    if kind == "exec":
        return field_str(p, "command", 300)
    if kind == "term_input":
        data = p.get("data") if isinstance(p, dict) else p
        return clean(data, 120)
    if kind == "term_size":
        return f"{field_int(p, 'cols')}x{field_int(p, 'rows')}"
    if kind == "disconnect":
        return field_str(p, "reason", 200)
    return clean(compact(p, 300), 300)
