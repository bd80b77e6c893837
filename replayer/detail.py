"""What the detail pane shows for one timeline event, as Rich renderables.

Every recorded value is cleaned (``replayer.sanitize``) and bounded before it becomes a
``Text``, ``Table`` or ``Syntax``; nothing here builds markup from recorded content.
"""

from __future__ import annotations

import json
from typing import Any, Final

from rich.console import Group, RenderableType
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from gateway.recording.reader import Record
from replayer.ansi import sanitize_bytes
from replayer.model import (
    REVIEW_KINDS,
    Event,
    SessionModel,
    approvers,
    decision_of,
    field_dict,
    field_int,
    field_list,
    field_str,
    summarize,
)
from replayer.sanitize import (
    CELL_LIMIT,
    DETAIL_LIMIT,
    clean,
    compact,
    format_offset,
    human_bytes,
    safe_text,
)

MAX_RESULT_ROWS: Final = 200
MAX_RESULT_COLUMNS: Final = 40
MAX_HEADERS: Final = 100
JSON_PARSE_LIMIT: Final = 1024 * 1024  # bodies larger than this are shown as text
DECISION_STYLE: Final = {
    "allow": "bold green", "deny": "bold red", "review": "bold yellow",
    # what an approval record did to its review
    "requested": "yellow", "approved": "bold green", "denied": "bold red",
    "timed out": "red", "cancelled": "red", "refused": "red", "expired": "red",
}
SYNTAX_THEME: Final = "ansi_dark"


def decision_text(action: str | None) -> Text:
    if action is None:
        return Text("")
    return Text(action.upper(), style=DECISION_STYLE.get(action, ""))


def render_event(model: SessionModel, event: Event) -> RenderableType:
    rec = model.records[event.first]
    parts: list[RenderableType] = [_heading(event)]
    if event.kind == "query":
        parts.extend(_query(rec))
        parts.extend(_prelude(model, event, rec))
        parts.extend(_followers(model, event, rec))
    elif event.kind == "http_request":
        parts.extend(_http_request(rec))
        parts.extend(_prelude(model, event, rec))
        parts.extend(_followers(model, event, rec))
    elif event.kind == "exec":
        parts.extend(_exec(rec))
    elif event.kind == "output":
        parts.append(_output(model, event))
    else:
        parts.extend(_record(rec, rec.t))
    for part in parts:
        if isinstance(part, Text):
            part.end = "\n"  # each part is a line of its own (see safe_text)
    return Group(*parts)


def _heading(event: Event) -> Text:
    text = Text(f"{format_offset(event.t)}  ", style="dim")
    text.append(safe_text(event.kind, 64, style="bold"))
    if event.decision:
        text.append("  ")
        text.append(decision_text(event.decision))
    return text


def _decision_block(payload: Any) -> list[RenderableType]:
    decision = field_dict(payload, "decision")
    if not decision:
        raw = payload.get("decision") if isinstance(payload, dict) else None
        if raw is None:
            return []
        return [Text.assemble("Decision: ", safe_text(raw, CELL_LIMIT, style="bold"))]
    line = Text("Decision: ")
    line.append(decision_text(decision_of(payload)) or safe_text(decision.get("action")))
    rule = field_str(decision, "rule", CELL_LIMIT)
    if rule:
        line.append("  rule ")
        line.append(safe_text(rule, CELL_LIMIT, style="bold"))
    out: list[RenderableType] = [line]
    reason = field_str(decision, "reason", 1000)
    if reason:
        out.append(Text.assemble("Reason:   ", safe_text(reason, 1000)))
    return out


def _query(rec: Record) -> list[RenderableType]:
    p = rec.payload
    out: list[RenderableType] = []
    out.extend(_decision_block(p))
    meta = []
    for label, key in (("protocol", "protocol"), ("statement", "statement")):
        value = field_str(p, key, 64)
        if value:
            meta.append(f"{label} {value}")
    if meta:
        out.append(Text("  ".join(meta), style="dim"))
    sql = p.get("sql") if isinstance(p, dict) else None
    out.append(Text(""))
    out.append(_code(sql if sql is not None else p, "sql"))
    params = field_list(p, "params")
    if params:
        out.append(_params(params))
    commands = field_list(p, "commands")
    if commands:
        table = Table(show_edge=False, box=None, pad_edge=False, header_style="dim")
        for column in ("kinds", "categories", "objects", "flags"):
            table.add_column(column)
        for command in commands[:50]:
            table.add_row(*(
                safe_text(", ".join(clean(v, 64) for v in field_list(command, column)[:20]),
                          CELL_LIMIT)
                for column in ("kinds", "categories", "objects", "flags")
            ))
        out.append(Text(""))
        out.append(table)
    return out


def _params(params: list[Any]) -> Text:
    line = Text("Parameters: ", style="bold")
    for n, value in enumerate(params[:100], 1):
        line.append(f"${n}=", style="dim")
        line.append(safe_text(value, CELL_LIMIT, style="cyan"))
        line.append("  ")
    return line


def _code(value: Any, lexer: str) -> RenderableType:
    body = clean(value, DETAIL_LIMIT, multiline=True)
    return Syntax(body, lexer, theme=SYNTAX_THEME, word_wrap=True,
                  background_color="default")


def _prelude(model: SessionModel, event: Event, command: Record) -> list[RenderableType]:
    """The review that held the command: recorded before it, shown with it."""
    out: list[RenderableType] = []
    for rec in model.prelude(event):
        out.append(Text(""))
        before = command.t - rec.t
        out.append(Text(f"{_elapsed(before)} before", style="dim italic"))
        out.extend(_record(rec, command.t))
    return out


def _elapsed(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def _followers(model: SessionModel, event: Event, command: Record) -> list[RenderableType]:
    out: list[RenderableType] = []
    for rec in model.related(event):
        out.append(Text(""))
        out.append(Text(f"after {_elapsed(rec.t - command.t)}", style="dim italic"))
        out.extend(_record(rec, command.t))
    return out


def _record(rec: Record, since: float) -> list[RenderableType]:
    kind = rec.kind
    if kind == "result":
        return [_result(rec.payload)]
    if kind == "error":
        return [Text.assemble(
            ("ERROR ", "bold red"),
            safe_text(field_str(rec.payload, "sqlstate", 16), style="red"),
            "  ",
            safe_text(field_str(rec.payload, "message", 2000), 2000),
        )]
    if kind in REVIEW_KINDS:
        return [_review(rec)]
    if kind == "http_response":
        return _http_response(rec)
    if kind == "query":
        return _query(rec)
    if kind == "http_request":
        return _http_request(rec)
    if kind == "exec":
        return _exec(rec)
    if kind in ("term_input", "term_size", "disconnect"):
        return [safe_text(summarize(rec), DETAIL_LIMIT)]
    return [Text("payload:", style="dim"), _code(_pretty(rec.payload), "json")]


def _review(rec: Record) -> RenderableType:
    p = rec.payload
    state = REVIEW_KINDS.get(rec.kind, "?")
    text = Text("Review ")
    text.append(safe_text(field_str(p, "review", 64) or "?", 64, style="bold"))
    text.append(" ")
    text.append(Text(state.upper(), style=DECISION_STYLE.get(state, "bold")))
    who = approvers(p) if "approvers" in (p if isinstance(p, dict) else {}) else []
    by = field_str(p, "by", 200)
    if who or by:
        text.append(" by ")
        text.append(safe_text(", ".join(who) or by, 300, style="bold"))
    for label, key, unit in (("rule", "rule", ""), ("at", "at", ""),
                             ("decided", "decided_at", ""), ("after", "after", " s"),
                             ("needs", "min_approvals", ""), ("expires", "expires_at", "")):
        value = field_str(p, key, CELL_LIMIT)
        if value:
            text.append(f"  {label} ", style="dim")
            text.append(safe_text(value + unit, CELL_LIMIT))
    groups = field_list(p, "approver_groups")
    if groups:
        text.append("  approvers from ", style="dim")
        text.append(safe_text(", ".join(clean(g, 64) for g in groups[:20]), CELL_LIMIT))
    reason = field_str(p, "reason", 1000)
    if reason:
        text.append("\n  reason: ", style="dim")
        text.append(safe_text(reason, 1000))
    for item in field_list(p, "approvers")[:20]:
        note = field_str(item, "reason", 1000)
        if note:
            text.append("\n  ")
            text.append(safe_text(field_str(item, "subject", 64), 64, style="bold"))
            text.append(": ")
            text.append(safe_text(note, 1000))
    parts: list[RenderableType] = [text]
    if rec.kind == "review_requested" and isinstance(p, dict) and "sql" in p:
        parts.append(_code(p.get("sql"), "sql"))
        params = field_list(p, "params")
        if params:
            parts.append(_params(params))
    return Group(*parts)


def _result(p: Any) -> RenderableType:
    columns = field_list(p, "columns")[:MAX_RESULT_COLUMNS]
    rows = field_list(p, "rows")
    row_count = field_int(p, "row_count")
    recorded = field_int(p, "rows_recorded")
    cap = field_int(p, "row_cap")
    masked = field_int(p, "masked_rows")
    nulled = field_int(p, "nulled_binary_values")
    facts = Text.assemble(("RESULT ", "bold"), safe_text(field_str(p, "tag", 64), 64))
    if row_count is not None:
        facts.append(f"  {row_count} rows")
    if recorded is not None:
        facts.append(f", {recorded} recorded")
    if cap is not None:
        facts.append(f" (cap {cap})")
    if masked is not None and masked > 0:
        facts.append(f", {masked} masked", style="magenta")
    if nulled is not None and nulled > 0:
        facts.append(f", {nulled} binary values nulled", style="magenta")
    if not columns and not rows:
        return facts
    width = max([len(columns)] + [len(r) for r in rows[:MAX_RESULT_ROWS] if isinstance(r, list)])
    width = min(width, MAX_RESULT_COLUMNS)
    table = Table(header_style="bold", show_lines=False, expand=False)
    for n in range(width):
        name = columns[n] if n < len(columns) else f"?{n + 1}"
        table.add_column(safe_text(name, 64), overflow="fold")
    shown = 0
    for row in rows[:MAX_RESULT_ROWS]:
        cells = row if isinstance(row, list) else [row]
        table.add_row(*(_cell(cells[n]) if n < len(cells) else Text("") for n in range(width)))
        shown += 1
    parts: list[RenderableType] = [facts, table]
    if len(rows) > shown:
        parts.append(Text(f"showing the first {shown} of {len(rows)} recorded rows "
                          "(export the session for all)", style="dim italic"))
    return Group(*parts)


def _cell(value: Any) -> Text:
    if value is None:
        return Text("NULL", style="dim italic")
    text = safe_text(value, CELL_LIMIT)
    if "****" in text.plain:
        text.stylize("magenta")  # a masked value: what the agent saw, not the data
    return text


def _headers(value: Any) -> Table:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="cyan")
    table.add_column()
    items = value if isinstance(value, list) else []
    for item in items[:MAX_HEADERS]:
        if isinstance(item, list) and len(item) == 2:
            table.add_row(safe_text(item[0], 100), safe_text(item[1], CELL_LIMIT))
        else:
            table.add_row(Text("?"), safe_text(item, CELL_LIMIT))
    if len(items) > MAX_HEADERS:
        table.add_row(Text("…"), Text(f"{len(items) - MAX_HEADERS} more headers"))
    return table


def _header_value(headers: Any, name: str) -> str:
    for item in headers if isinstance(headers, list) else []:
        if (isinstance(item, list) and len(item) == 2 and isinstance(item[0], (str, bytes))
                and clean(item[0], 64).lower() == name):
            return clean(item[1], 200).lower()
    return ""


def _body(p: Any) -> list[RenderableType]:
    body = p.get("body") if isinstance(p, dict) else None
    size = field_int(p, "body_size")
    if body is None or body in (b"", ""):
        return [Text("(no body)", style="dim")] if not size else []
    length = len(body) if isinstance(body, (bytes, str)) else 0
    facts = f"body {human_bytes(size if size is not None else length)}"
    if (isinstance(p, dict) and p.get("body_truncated") is True) or (
            size is not None and size > length):
        facts += f", recorded {human_bytes(length)} (capped)"
    out: list[RenderableType] = [Text(facts, style="dim")]
    content_type = _header_value(p.get("headers") if isinstance(p, dict) else None,
                                 "content-type")
    pretty = _as_json(body) if ("json" in content_type or _looks_json(body)) else None
    if pretty is not None:
        out.append(_code(pretty, "json"))
    else:
        out.append(safe_text(body, DETAIL_LIMIT, multiline=True))
    return out


def _looks_json(body: Any) -> bool:
    head = body[:1] if isinstance(body, (bytes, str)) else b""
    return head in (b"{", b"[", "{", "[")


def _as_json(body: Any) -> str | None:
    if not isinstance(body, (bytes, str)) or len(body) > JSON_PARSE_LIMIT:
        return None
    try:
        value = json.loads(body)
        return json.dumps(value, indent=2, ensure_ascii=False)[: DETAIL_LIMIT + 1]
    except (ValueError, RecursionError, UnicodeDecodeError):
        return None


def _pretty(value: Any) -> str:
    try:
        return json.dumps(value, indent=2, ensure_ascii=False, default=_bytes_repr)[
            : DETAIL_LIMIT + 1]
    except (ValueError, TypeError, RecursionError):
        return compact(value, DETAIL_LIMIT)


def _bytes_repr(value: Any) -> str:
    if isinstance(value, bytes):
        return clean(value, CELL_LIMIT)
    return clean(repr(value), CELL_LIMIT)


def _http_request(rec: Record) -> list[RenderableType]:
    p = rec.payload
    out: list[RenderableType] = list(_decision_block(p))
    out.append(Text.assemble(
        safe_text(field_str(p, "method", 16), 16, style="bold"), " ",
        safe_text(field_str(p, "target", 2000), 2000, style="cyan"),
    ))
    out.append(_headers(p.get("headers") if isinstance(p, dict) else None))
    out.extend(_body(p))
    return out


def _http_response(rec: Record) -> list[RenderableType]:
    p = rec.payload
    status = field_int(p, "status")
    style = "bold green" if status is not None and status < 400 else "bold red"
    out: list[RenderableType] = [Text.assemble(
        ("HTTP ", "bold"), (str(status) if status is not None else "?", style), " ",
        safe_text(field_str(p, "reason", 64), 64),
    )]
    out.append(_headers(p.get("headers") if isinstance(p, dict) else None))
    out.extend(_body(p))
    return out


def _exec(rec: Record) -> list[RenderableType]:
    p = rec.payload
    # The command first: in a terminal session the pane below the screen is short.
    out: list[RenderableType] = [_code(p.get("command") if isinstance(p, dict) else p, "bash")]
    out.extend(_decision_block(p))
    return out


def _output(model: SessionModel, event: Event) -> RenderableType:
    total = 0
    pieces: list[str] = []
    for rec in model.records[event.first : event.last]:
        data = rec.payload.get("data") if isinstance(rec.payload, dict) else None
        if isinstance(data, bytes):
            total += len(data)
            if sum(len(p) for p in pieces) < DETAIL_LIMIT:
                pieces.append(sanitize_bytes(data[: DETAIL_LIMIT * 2]))
    text = "".join(pieces).replace("\r\n", "\n")
    # Sequences were reduced to drawing ones by sanitize_bytes; they are shown escaped here,
    # the terminal pane is where they are interpreted (by pyte).
    return Group(
        Text(f"{len(model.records[event.first:event.last])} output records, "
             f"{human_bytes(total)} (shown as text; the screen is on the left)", style="dim"),
        safe_text(text, DETAIL_LIMIT, multiline=True, end="\n"),
    )
