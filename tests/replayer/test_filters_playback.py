"""Browser filters and sort orders; the playhead's rules."""

from __future__ import annotations

from dataclasses import replace

import pytest

from replayer.filters import Filters, apply_filters, sort_sessions
from replayer.index import SessionSummary
from replayer.playback import IDLE_LIMIT, SPEEDS, Playback, parse_time

STARTED = 1_767_258_000.0  # 2026-01-01 09:00 UTC
BASE = SessionSummary(
    path="/r/a.wgrec", name="a.wgrec", session_id="a", started=STARTED,
    identity="agent-claude", groups=("ai-agents",), target="pg-prod", protocol="postgres",
    duration=10.0, commands=3, denied=0, reviewed=0, decisions=("allow",),
    integrity="verified", integrity_message="",
)
SESSIONS = [
    BASE,
    replace(BASE, path="/r/b.wgrec", name="b.wgrec", identity="bob", groups=("dba",),
            target="billing-api", protocol="http", started=STARTED + 86_400 * 3,
            decisions=("allow", "deny"), denied=2, integrity="tampered"),
    replace(BASE, path="/r/c.wgrec", name="c.wgrec", identity="agent-opsbot",
            groups=("ops", "ai-agents"), target="web-1", protocol="ssh", started=None,
            decisions=("review",), reviewed=1, duration=99.0),
]


def names(found: list[SessionSummary]) -> list[str]:
    return [s.name for s in found]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (Filters(), ["a.wgrec", "b.wgrec", "c.wgrec"]),
        (Filters(identity="AGENT"), ["a.wgrec", "c.wgrec"]),
        (Filters(identity="dba"), ["b.wgrec"]),  # groups match too
        (Filters(target="pg"), ["a.wgrec"]),
        (Filters(protocol="ssh"), ["c.wgrec"]),
        (Filters(since="2026-01-02"), ["b.wgrec"]),  # no start time: excluded by a date
        (Filters(until="2026-01-01"), ["a.wgrec"]),
        (Filters(since="2026-01-01", until="2026-01-04"), ["a.wgrec", "b.wgrec"]),
        (Filters(since="not a date"), ["a.wgrec", "b.wgrec", "c.wgrec"]),  # ignored
        (Filters(decision="deny"), ["b.wgrec"]),
        (Filters(decision="review"), ["c.wgrec"]),
        (Filters(identity="agent", decision="allow"), ["a.wgrec"]),
    ],
)
def test_filters(filters: Filters, expected: list[str]) -> None:
    assert names(apply_filters(SESSIONS, filters)) == expected


def test_search_hits_restrict_the_sessions() -> None:
    assert names(apply_filters(SESSIONS, Filters(search="x"), {"/r/c.wgrec"})) == ["c.wgrec"]


def test_sort_orders() -> None:
    assert names(sort_sessions(SESSIONS, "started", True)) == ["b.wgrec", "a.wgrec", "c.wgrec"]
    assert names(sort_sessions(SESSIONS, "identity", False)) == ["a.wgrec", "c.wgrec", "b.wgrec"]
    assert names(sort_sessions(SESSIONS, "integrity", False))[0] == "b.wgrec"  # TAMPERED first
    assert names(sort_sessions(SESSIONS, "duration", True))[0] == "c.wgrec"


def playback() -> Playback:
    # Events at 0, 0.1 (command), 5 (command), 5.2, 30 (command).
    starts = [0.0, 0.1, 5.0, 5.2, 30.0]
    return Playback.for_events(starts, starts, [1, 2, 4], 31.0)


def test_playing_compresses_idle_gaps_unless_real_time() -> None:
    pb = playback()
    pb.toggle()
    pb.tick(0.2)
    assert pb.index == 1
    pb.tick(0.1)  # 4.9 s to the next event: skipped down to IDLE_LIMIT
    assert pb.t == pytest.approx(5.0 - IDLE_LIMIT + 0.1)
    real = playback()
    real.real_time = True
    real.toggle()
    real.tick(0.2)
    real.tick(0.1)
    assert real.t == pytest.approx(0.3) and real.index == 1


def test_speed_scales_recorded_time_and_is_bounded() -> None:
    pb = playback()
    for _ in range(10):
        pb.faster()
    assert pb.speed == SPEEDS[-1] == 16.0
    for _ in range(10):
        pb.slower()
    assert pb.speed == SPEEDS[0] == 0.5
    pb.real_time = True
    pb.toggle()
    pb.tick(0.2)
    assert pb.t == pytest.approx(0.1)


def test_playing_stops_at_the_end_and_restarts_from_the_start() -> None:
    pb = playback()
    pb.real_time = True
    pb.toggle()
    pb.tick(100.0)
    assert not pb.playing and pb.index == 4 and pb.t == 31.0 and pb.at_end
    pb.toggle()
    assert pb.playing and pb.index == 0 and pb.t == 0.0


def test_command_steps_and_jumps() -> None:
    pb = playback()
    assert pb.next_command() and pb.index == 1
    assert pb.next_command() and pb.index == 2 and pb.t == 5.0
    assert pb.next_command() and pb.index == 4
    assert not pb.next_command()
    assert pb.previous_command() and pb.index == 2
    pb.jump(5.1)
    assert pb.index == 2 and pb.t == 5.1
    pb.jump(-10)
    assert pb.index == 0 and pb.t == 0.0
    pb.jump(1e9)
    assert pb.index == 4 and pb.t == 31.0
    pb.step(-1)
    assert pb.index == 3


def test_times_that_go_backwards_are_made_monotonic() -> None:
    pb = Playback.for_events([0.0, 5.0, 2.0, 6.0], [0.0, 5.0, 2.0, 6.0], [], 6.0)
    assert pb.starts == [0.0, 5.0, 5.0, 6.0]
    pb.jump(5.5)
    assert pb.index == 2


def test_empty_session_playback_is_inert() -> None:
    pb = Playback.for_events([], [], [], 0.0)
    pb.toggle()
    assert not pb.playing and not pb.tick(1.0) and not pb.next_command()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90.0), ("1:30", 90.0), ("1:02:03.5", 3723.5), ("+10", 10.0), ("-5", -5.0),
     (" 41.3 ", 41.3), ("", None), ("abc", None), ("1:2:3:4", None), ("nan", None),
     ("inf", None)],
)
def test_parse_time(text: str, seconds: float | None) -> None:
    assert parse_time(text) == seconds
