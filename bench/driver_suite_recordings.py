"""What the gateway's own recordings say about a driver-suite run: the other half of the evidence.

A failing test names the symptom; the recordings of the same run name what the gateway did:
which statements it denied (and by which rule), which results it masked or NULLed, and why each
session ended. Masking that changed a value the test never checked shows up only here.
"""

from __future__ import annotations

import bisect
import functools
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.recording.format import RecordingFormatError
from gateway.recording.reader import read_recording

_QUIET_ENDS = frozenset({"closed", "client terminated", "client closed"})


def _shape(sql: str, width: int = 90) -> str:
    """A statement folded to its shape: whitespace squeezed, literals and numbers elided."""
    text = re.sub(r"\s+", " ", sql).strip()
    text = re.sub(r"'(?:[^']|'')*'", "'…'", text)
    text = re.sub(r"\b\d+\b", "N", text)
    return text[:width] + ("…" if len(text) > width else "")


def _fold(text: str) -> str:
    return re.sub(r"\d+", "N", text)


@dataclass
class RecordingSummary:
    sessions: int = 0
    unreadable: int = 0
    ends: Counter[str] = field(default_factory=Counter)  # why sessions ended, quiet ones left out
    denials: Counter[str] = field(default_factory=Counter)  # rule: reason | statement shape
    masked: Counter[str] = field(default_factory=Counter)  # statement shape -> rows masked
    nulled: Counter[str] = field(default_factory=Counter)  # statement shape -> binary values NULLed
    examples: dict[str, str] = field(default_factory=dict)  # statement shape -> a masked row
    tests: dict[str, list[str]] = field(default_factory=dict)  # any key above -> tests behind it

    def saw(self, key: str, *, test: str) -> None:
        tests = self.tests.setdefault(key, [])
        if test not in tests and len(tests) < 5:
            tests.append(test)

    def to_json(self) -> dict[str, Any]:
        return {
            "sessions": self.sessions,
            "unreadable": self.unreadable,
            "ends": dict(self.ends.most_common()),
            "denials": dict(self.denials.most_common()),
            "masked_rows": dict(self.masked.most_common()),
            "nulled_binary_values": dict(self.nulled.most_common()),
            "examples": self.examples,
            "tests": self.tests,
        }


def _test_at(spans: list[tuple[float, float, str]], when: float) -> str:
    """The test that was running when a session started (spans sorted by start)."""
    i = bisect.bisect_right(spans, (when, float("inf"), "")) - 1
    if i >= 0 and spans[i][0] <= when <= spans[i][1] + 0.5:
        return spans[i][2]
    return "?"


def summarise(paths: Iterable[Path], spans: Iterable[tuple[float, float, str]] = ()) -> RecordingSummary:
    """``spans``: (start, end, test id) of the run's tests in wall-clock time, to name the test
    behind each finding."""
    summary = RecordingSummary()
    ordered = sorted(spans)
    for path in paths:
        summary.sessions += 1
        try:
            recording = read_recording(path)
        except (RecordingFormatError, OSError):  # itself a finding: counted, not raised
            summary.unreadable += 1
            continue
        test = _test_at(ordered, float(recording.header.get("started", 0.0)))
        seen = functools.partial(summary.saw, test=test)
        end = (recording.end or {}).get("reason", "no end record")
        sql = ""
        for rec in recording.records:
            payload = rec.payload if isinstance(rec.payload, dict) else {}
            if rec.kind == "query":
                sql = str(payload.get("sql", ""))
                decision = payload.get("decision") or {}
                if decision.get("action") == "deny":
                    key = f"{decision.get('rule')}: {_fold(str(decision.get('reason', '')))} | {_shape(sql, 60)}"
                    summary.denials[key] += 1
                    seen(key)
            elif rec.kind == "result":
                shape = _shape(sql)
                if payload.get("masked_rows"):
                    summary.masked[shape] += int(payload["masked_rows"])
                    seen(shape)
                    for row in payload.get("rows") or []:
                        if any("****" in str(v) for v in row):
                            summary.examples.setdefault(shape, repr(row)[:160])
                            break
                if payload.get("nulled_binary_values"):
                    summary.nulled[shape] += int(payload["nulled_binary_values"])
            elif rec.kind == "disconnect":
                end = str(payload.get("reason", end))
        if end not in _QUIET_ENDS:
            summary.ends[_fold(end)[:200]] += 1
            seen(_fold(end)[:200])
    return summary


def print_summary(summary: RecordingSummary, *, show: int) -> None:
    print(f"\nThe gateway's recordings of the wardgate run: {summary.sessions} sessions"
          + (f" ({summary.unreadable} unreadable)" if summary.unreadable else ""))
    sections = (
        ("sessions that ended other than by the client", summary.ends),
        ("statements denied (rule: reason | statement)", summary.denials),
        ("rows masked, by statement", summary.masked),
        ("binary values NULLed, by statement", summary.nulled),
    )
    for title, counter in sections:
        if not counter:
            continue
        print(f"  {title}:")
        for key, count in counter.most_common(show):
            print(f"    [{count:>4}] {key}")
            if counter is summary.masked and key in summary.examples:
                print(f"           e.g. {summary.examples[key]}")
            if key in summary.tests and counter is not summary.nulled:
                print(f"           in {', '.join(summary.tests[key][:3])}")
        if len(counter) > show:
            print(f"    ... and {len(counter) - show} more")
