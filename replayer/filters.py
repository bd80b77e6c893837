"""The session browser's filters and sort orders, kept apart from widgets so they can be tested
as plain functions."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final

from replayer.index import SessionSummary

DECISIONS: Final = ("any", "allow", "deny", "review")
INTEGRITY_ORDER: Final = {"tampered": 0, "unreadable": 1, "truncated": 2, "unsigned": 3,
                          "verified": 4}


@dataclass(frozen=True, slots=True)
class Filters:
    identity: str = ""  # substring of subject or any group
    target: str = ""
    protocol: str = ""
    since: str = ""  # YYYY-MM-DD, UTC, inclusive
    until: str = ""  # YYYY-MM-DD, UTC, inclusive
    decision: str = "any"
    search: str = ""  # full-text over statement text (through the index)

    @property
    def active(self) -> bool:
        return self != Filters()


def parse_day(text: str) -> date | None:
    """``YYYY-MM-DD`` → date; anything else → None (the filter is then ignored and flagged)."""
    text = text.strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def _day_bounds(filters: Filters) -> tuple[float | None, float | None]:
    since = parse_day(filters.since)
    until = parse_day(filters.until)
    low = datetime.combine(since, time(), UTC).timestamp() if since else None
    high = (datetime.combine(until, time(), UTC) + timedelta(days=1)).timestamp() if until else None
    return low, high


def apply_filters(
    sessions: Iterable[SessionSummary],
    filters: Filters,
    search_hits: set[str] | None = None,
) -> list[SessionSummary]:
    """Sessions matching every filter. ``search_hits`` are the paths the index found for
    ``filters.search`` (None when there is no search)."""
    ident = filters.identity.strip().casefold()
    target = filters.target.strip().casefold()
    protocol = filters.protocol.strip().casefold()
    low, high = _day_bounds(filters)
    out: list[SessionSummary] = []
    for s in sessions:
        if ident and ident not in s.identity.casefold() and not any(
            ident in g.casefold() for g in s.groups
        ):
            continue
        if target and target not in s.target.casefold():
            continue
        if protocol and protocol != s.protocol.casefold():
            continue
        if low is not None and (s.started is None or s.started < low):
            continue
        if high is not None and (s.started is None or s.started >= high):
            continue
        if filters.decision != "any" and filters.decision not in s.decisions:
            continue
        if search_hits is not None and s.path not in search_hits:
            continue
        out.append(s)
    return out


# Column key -> sort key. Sessions without a start time sort as the oldest.
SORT_KEYS: Final[dict[str, Callable[[SessionSummary], Any]]] = {
    "started": lambda s: (s.started if s.started is not None else float("-inf"), s.name),
    "identity": lambda s: (s.identity.casefold(), s.name),
    "groups": lambda s: (",".join(s.groups).casefold(), s.name),
    "target": lambda s: (s.target.casefold(), s.name),
    "protocol": lambda s: (s.protocol, s.name),
    "duration": lambda s: (s.duration, s.name),
    "commands": lambda s: (s.commands, s.name),
    "denied": lambda s: (s.denied, s.name),
    "reviewed": lambda s: (s.reviewed, s.name),
    "integrity": lambda s: (INTEGRITY_ORDER.get(s.integrity, 0), s.name),
}


def sort_sessions(
    sessions: list[SessionSummary], column: str, descending: bool
) -> list[SessionSummary]:
    key = SORT_KEYS.get(column, SORT_KEYS["started"])
    return sorted(sessions, key=key, reverse=descending)
