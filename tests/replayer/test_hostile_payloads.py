"""Any payload the reader can hand over must display: no exception, no control character.

The reader guarantees only that payloads are decoded msgpack within its limits; a forged or
damaged-then-resealed file can put any such value under any record kind. Hypothesis builds
such values for every kind the replayer interprets (and unknown ones).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

from gateway.recording.reader import Integrity, Record, Recording
from replayer.detail import render_event
from replayer.export import asciicast_lines, jsonl_lines
from replayer.model import build_model
from replayer.session_view import header_text
from replayer.terminal import TerminalPlayer

KINDS = ["query", "result", "error", "review_requested", "review_approved", "review_denied",
         "review_timed_out", "grant_used", "http_request", "http_response", "exec",
         "term_input", "term_output", "term_size", "disconnect", "mystery\x1b[31m"]
CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")
HOSTILE_TEXT = st.sampled_from(["\x1b]52;c;eA==\x07", "\x1b[6n", "[bold]x[/]", "\u202e",
                                "\x9b31m", "sql", "allow", "deny", "review", "approved",
                                "data", "cols", "rows", "body", "headers", "status"])
SCALARS = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
           | st.floats(allow_nan=True, allow_infinity=True) | HOSTILE_TEXT | st.text(max_size=20)
           | st.binary(max_size=40))
KEYS = HOSTILE_TEXT | st.sampled_from(["action", "rule", "reason", "columns", "method",
                                       "target", "command", "id", "state", "by", "params",
                                       "decision", "sqlstate", "message", "tag", "row_count",
                                       "review", "approvers", "subject", "approver_groups"])
PAYLOADS = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(KEYS, inner, max_size=6),
    max_leaves=25,
)
RECORDS = st.lists(
    st.tuples(st.floats(0, 1e6), st.sampled_from(KINDS), PAYLOADS), min_size=1, max_size=12
)
HEADERS = st.dictionaries(
    st.sampled_from(["session_id", "identity", "target", "protocol", "peer", "started",
                     "gateway_version"]),
    PAYLOADS, max_size=7,
)


def render(renderable: Any) -> str:
    console = Console(width=100, color_system=None, force_terminal=False, record=True)
    with console.capture() as capture:
        console.print(renderable)
    return capture.get()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=RECORDS, header=HEADERS)
def test_any_payload_displays_without_control_characters(
    records: list[tuple[float, str, Any]], header: dict[str, Any]
) -> None:
    recording = Recording(
        header=header,
        records=[Record(t, kind, payload) for t, kind, payload in records],
        end=None,
        truncated=True,
        integrity=Integrity("truncated", 3, "truncated: \x1b]0;x\x07"),
    )
    model = build_model(Path("x.wgrec"), recording)
    shown = [render(header_text(model))]
    shown.extend(render(render_event(model, event)) for event in model.events)
    if model.is_terminal:
        player = TerminalPlayer(model.terminal, model.terminal_size)
        player.seek_index(len(player.chunks))
        shown.append(player.render().plain)
        for line in asciicast_lines(model):
            assert "\x1b]" not in line and "\\u001b]" not in line
    for text in shown:
        assert not CONTROL.search(text), text
    for line in jsonl_lines(model):
        assert line.isascii()
