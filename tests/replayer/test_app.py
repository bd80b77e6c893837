"""The replayer driven as an auditor would: Pilot presses keys and clicks, tests read the screen."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from rich.console import Console
from textual._compositor import LayoutUpdate
from textual.app import App
from textual.geometry import Region
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Select, Static

from replayer.app import ReplayApp, load_public_key, main
from replayer.browser import BrowserScreen
from replayer.dialogs import HelpScreen
from replayer.session_view import SessionScreen
from tests.replayer.conftest import DAY, run_app, settle
from tests.replayer.make_golden import FILES, signing_key

AppFactory = Callable[..., ReplayApp]


def table_rows(app: App[Any], selector: str = "#sessions") -> list[list[str]]:
    table = app.screen.query_one(selector, DataTable)
    return [[str(getattr(c, "plain", c)) for c in table.get_row_at(r)]
            for r in range(table.row_count)]


def static_text(app: App[Any], selector: str) -> str:
    widget = app.screen.query_one(selector, Static)
    content = widget.content
    return str(getattr(content, "plain", content))


def rendered_frame(app: App[Any]) -> tuple[str, list[str]]:
    """The current screen as Textual would write it to the auditor's terminal: the encoded
    bytes, and the text of every segment (what came from widgets, before Textual adds its own
    colour and cursor sequences)."""
    console = Console(force_terminal=True, width=app.size.width, file=io.StringIO(),
                      legacy_windows=False)
    update = app.screen._compositor.render_update(full=True)
    assert isinstance(update, LayoutUpdate)
    texts = [segment.text for strip in update.strips for segment in strip]
    return update.render_segments(console), texts


RAW_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def assert_no_raw_control(app: App[Any]) -> str:
    """No recorded control character reaches the terminal; returns the screen's text."""
    encoded, texts = rendered_frame(app)
    found = [t for t in texts if RAW_CONTROL.search(t)]
    assert found == [], f"raw control characters reach the terminal: {found[:5]!r}"
    # Textual writes only SGR and cursor positioning: no OSC (titles, clipboard, links).
    assert "\x1b]" not in encoded and "\x07" not in encoded and "\x1bP" not in encoded
    return "".join(texts)


async def eventually(pilot: Pilot[Any], condition: Callable[[], bool],
                     timeout: float = 5.0) -> None:
    """Wait for what a timer will do (debounced filters, playback ticks), without guessing
    how long it takes on a slow machine."""
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError("condition not reached in time")


async def filters_applied(pilot: Pilot[Any]) -> None:
    screen = pilot.app.screen
    assert isinstance(screen, BrowserScreen)
    await eventually(pilot, lambda: screen._read_filters() == screen.filters)
    await pilot.pause()


def session_file(recordings: Path, name: str) -> Path:
    return recordings / DAY / FILES[name]


async def open_session(pilot: Pilot[Any], name_part: str) -> SessionScreen:
    app = pilot.app
    assert isinstance(app.screen, BrowserScreen)
    row = next(i for i, s in enumerate(app.screen.shown_sessions) if name_part in s.name)
    app.screen.query_one("#sessions", DataTable).move_cursor(row=row)
    await pilot.press("enter")
    await settle(pilot)
    assert isinstance(app.screen, SessionScreen)
    return app.screen


# -- browsing ---------------------------------------------------------------------------------
def test_browser_lists_sessions_newest_first_with_integrity(make_app: AppFactory) -> None:
    async def scenario(pilot: Pilot[Any]) -> None:
        app = pilot.app
        rows = table_rows(app)
        assert len(rows) == len(FILES)
        assert [r[0] for r in rows] == sorted((r[0] for r in rows), reverse=True)
        integrity = {r[1] + " " + r[0][11:16]: r[-1] for r in rows}
        assert integrity["agent-claude 12:00"] == "TAMPERED"  # forged seal
        assert integrity["agent-claude 11:30"] == "TAMPERED"  # flipped byte
        assert integrity["agent-claude 11:00"] == "truncated"
        assert integrity["agent-claude 09:00"] == "verified"
        assert rows[3][1].startswith("mallory␛]52;c;")  # hostile identity, neutralised
        assert "7 of 7 sessions" in static_text(app, "#browser-status")
        assert "2 TAMPERED" in static_text(app, "#browser-status")
        assert_no_raw_control(app)

    run_app(make_app(), scenario)


def test_filter_by_identity_typed_into_the_filter_bar(make_app: AppFactory) -> None:
    async def scenario(pilot: Pilot[Any]) -> None:
        app = pilot.app
        await pilot.press("f", *"ops")
        await filters_applied(pilot)
        assert [r[1] for r in table_rows(app)] == ["agent-opsbot"]
        await pilot.press("escape", "c")
        await filters_applied(pilot)
        assert len(table_rows(app)) == len(FILES)
        await pilot.press("f", "tab", *"bill")  # the target filter
        await pilot.press("enter")
        await filters_applied(pilot)
        assert [r[3] for r in table_rows(app)] == ["billing-api"]

    run_app(make_app(), scenario)


def test_filter_by_decision_with_the_mouse_and_by_date(make_app: AppFactory) -> None:
    async def scenario(pilot: Pilot[Any]) -> None:
        app = pilot.app
        await pilot.click("#filter-decision")
        await pilot.pause()
        await pilot.press("down", "down", "down", "enter")  # any, allow, deny, review
        await filters_applied(pilot)
        assert app.screen.query_one("#filter-decision", Select).value == "review"
        assert sorted(r[0][11:16] for r in table_rows(app)) == ["09:00", "11:00", "12:00"]
        await pilot.press("escape", "c")
        screen = app.screen
        screen.query_one("#filter-since", Input).value = "2026-01-01"
        screen.query_one("#filter-until", Input).value = "2025-12-31"
        await filters_applied(pilot)
        assert table_rows(app) == []
        screen.query_one("#filter-until", Input).value = "2026-01-01"
        await filters_applied(pilot)
        assert len(table_rows(app)) == len(FILES)
        screen.query_one("#filter-since", Input).value = "2026-01-02"
        await filters_applied(pilot)
        assert table_rows(app) == []

    run_app(make_app(), scenario)


def test_full_text_search_finds_sessions_by_statement(make_app: AppFactory) -> None:
    async def scenario(pilot: Pilot[Any]) -> None:
        app = pilot.app
        await pilot.press("slash", *"ARCHIVE", "enter")  # case-insensitive
        await filters_applied(pilot)
        assert sorted(r[0][11:16] for r in table_rows(app)) == ["09:00", "11:00", "12:00"]
        await pilot.press("slash", "ctrl+u", *"rm -r", "enter")
        await filters_applied(pilot)
        assert [r[4] for r in table_rows(app)] == ["ssh"]

    run_app(make_app(), scenario)


def test_sort_by_key_and_by_clicking_a_header(make_app: AppFactory) -> None:
    async def scenario(pilot: Pilot[Any]) -> None:
        app = pilot.app
        await pilot.press("s")  # next column: identity, ascending
        await pilot.pause()
        identities = [r[1] for r in table_rows(app)]
        assert identities == sorted(identities, key=str.casefold)
        await pilot.press("o")
        await pilot.pause()
        assert [r[1] for r in table_rows(app)] == identities[::-1]
        table = app.screen.query_one("#sessions", DataTable)
        x = sum(c.get_render_width(table) for c in table.ordered_columns[:6]) + 2
        await pilot.click("#sessions", offset=(x, 0))  # the "cmds" header
        await pilot.pause()
        assert app.screen.sort_column == "commands"  # type: ignore[attr-defined]
        assert [int(r[6]) for r in table_rows(app)] == [6, 6, 6, 4, 3, 3, 2]  # most first
        await pilot.press("s", "s", "s")  # denied, reviewed, then integrity: damaged first
        await pilot.pause()
        assert app.screen.sort_column == "integrity"  # type: ignore[attr-defined]
        assert [r[-1] for r in table_rows(app)][:3] == ["TAMPERED", "TAMPERED", "truncated"]

    run_app(make_app(), scenario)


def test_index_is_cached_between_runs(make_app: AppFactory, tmp_path: Path) -> None:
    async def scenario(pilot: Pilot[Any]) -> None:
        assert len(table_rows(pilot.app)) == len(FILES)

    run_app(make_app(), scenario)
    assert (tmp_path / "index.sqlite3").stat().st_size > 0
    run_app(make_app(), scenario)


# -- opening and reading a session ------------------------------------------------------------
def test_open_a_session_with_enter_and_go_back(make_app: AppFactory) -> None:
    async def scenario(pilot: Pilot[Any]) -> None:
        screen = await open_session(pilot, "golden-pg-0001")
        header = static_text(pilot.app, "#session-header")
        assert "Session golden-pg-0001" in header
        assert "Identity agent-claude (ai-agents, oncall)  via jwt" in header
        assert "Target   pg-prod  at db.internal:5432  db shop  user app_reader" in header
        assert "VERIFIED" in header
        assert "6 commands, 2 denied, 2 reviewed" in header
        timeline = table_rows(pilot.app, "#timeline")
        assert timeline[2][1:3] == ["query", "DENY"]
        assert timeline[4][1:3] == ["review_approved", "APPROVED"]
        assert timeline[10][1:3] == ["review_denied", "DENIED"]
        shown = assert_no_raw_control(pilot.app)
        assert "SELECT id, email, card_number FROM customers" in shown
        assert "****-****-****-1111" in shown  # the masked result, as the agent saw it
        assert screen.model is not None
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(pilot.app.screen, BrowserScreen)

    run_app(make_app(), scenario)


def test_open_a_session_by_clicking_its_row(make_app: AppFactory) -> None:
    async def scenario(pilot: Pilot[Any]) -> None:
        await pilot.click("#sessions", offset=(3, 5))  # the 5th row: ssh at 10:00
        await pilot.click("#sessions", offset=(3, 5))  # clicking the highlighted row opens
        await settle(pilot)
        assert isinstance(pilot.app.screen, SessionScreen)
        assert "golden-ssh-0001" in static_text(pilot.app, "#session-header")

    run_app(make_app(), scenario)


def test_playback_controls(make_app: AppFactory, recordings: Path) -> None:
    app = make_app(open_path=session_file(recordings, "postgres"))

    async def scenario(pilot: Pilot[Any]) -> None:
        screen = pilot.app.screen
        assert isinstance(screen, SessionScreen) and screen.playback is not None
        pb = screen.playback
        timeline = screen.query_one("#timeline", DataTable)
        assert (pb.index, pb.playing) == (0, False)
        await pilot.press("plus", "plus")
        assert pb.speed == 4.0
        await pilot.press("minus")
        assert pb.speed == 2.0
        await pilot.press("space")
        assert pb.playing
        await eventually(pilot, lambda: pb.index >= 1)
        assert pb.t >= 0.437
        await pilot.press("space")
        assert not pb.playing
        await pilot.press("n")
        assert timeline.cursor_row == pb.index and pb.index in screen.model.command_indices
        await pilot.press("right_square_bracket")
        assert pb.index == 14
        await pilot.press("p")
        assert pb.index == 12
        await pilot.press("comma", "comma")
        assert pb.index == 10
        await pilot.press("full_stop")
        assert pb.index == 11
        await pilot.press("left_square_bracket")
        assert pb.index == 0
        await pilot.press("g", *"41.3", "enter")
        await pilot.pause()
        assert pb.t == 41.3 and pb.index == 4  # the approval
        assert "Review rv-7f3a APPROVED by bob@example.com" in assert_no_raw_control(pilot.app)
        await pilot.press("g", *"+2", "enter")
        await pilot.pause()
        assert abs(pb.t - 43.3) < 1e-9
        await pilot.press("g", *"soon", "enter")
        await pilot.pause()
        assert abs(pb.t - 43.3) < 1e-9  # not a time: nothing moves
        await pilot.press("r")
        assert pb.real_time
        assert "real time" in static_text(pilot.app, "#status")
        await pilot.press("down")  # the cursor is a playhead too
        await pilot.pause()
        assert pb.index == 7
        await pilot.click("#next-cmd")
        assert pb.index == 11
        await pilot.click("#play")
        assert pb.playing
        await pilot.pause(0.25)  # a button ignores clicks during its 0.2 s press effect
        await pilot.click("#play")
        assert not pb.playing

    run_app(app, scenario)


def test_detail_pane_shows_its_last_line(make_app: AppFactory, recordings: Path) -> None:
    app = make_app(open_path=session_file(recordings, "postgres"))

    async def scenario(pilot: Pilot[Any]) -> None:
        await pilot.press("right_square_bracket", "p")  # the last statement
        await pilot.pause()
        detail = pilot.app.screen.query_one("#detail-body", Static)
        lines = detail.render_lines(Region(0, 0, detail.size.width, detail.size.height))
        text = [strip.text.rstrip() for strip in lines]
        # The disconnect that followed is the pane's last line: an unterminated Text there
        # used to vanish.
        assert [line for line in text if line][-1] == "client terminated"

    run_app(app, scenario)


def test_real_speed_playback_reaches_the_end(make_app: AppFactory, recordings: Path) -> None:
    app = make_app(open_path=session_file(recordings, "ssh"))

    async def scenario(pilot: Pilot[Any]) -> None:
        screen = pilot.app.screen
        assert isinstance(screen, SessionScreen) and screen.playback is not None
        pb = screen.playback
        assert static_text(pilot.app, "#terminal").strip() == ""  # at the first event, 10 ms
        await pilot.press("full_stop")
        assert "Welcome to web-1" in static_text(pilot.app, "#terminal")
        assert "logout" not in static_text(pilot.app, "#terminal")
        await pilot.press("r", *["plus"] * 5, "space")  # 16x, events in recorded time
        assert pb.real_time and pb.speed == 16.0
        await eventually(pilot, lambda: pb.t > 1.0)
        assert pb.playing and pb.t < 12.1
        await eventually(pilot, lambda: not pb.playing)
        assert pb.at_end
        assert "logout" in static_text(pilot.app, "#terminal")
        assert "terminal 100x30" in str(screen.query_one("#terminal").border_title)

    run_app(app, scenario)


# -- export -----------------------------------------------------------------------------------
def test_export_keys_write_jsonl_and_asciicast(
    make_app: AppFactory, recordings: Path, tmp_path: Path
) -> None:
    app = make_app(open_path=session_file(recordings, "ssh"))

    async def scenario(pilot: Pilot[Any]) -> None:
        await pilot.press("e")
        jsonl = pilot.app.last_export  # type: ignore[attr-defined]
        await pilot.press("a")
        cast = pilot.app.last_export  # type: ignore[attr-defined]
        assert jsonl is not None and jsonl.suffix == ".jsonl"
        assert cast is not None and cast.suffix == ".cast"
        await pilot.press("escape")
        await open_session(pilot, "golden-pg-0001")
        await pilot.press("a")  # not a terminal session: refused
        assert pilot.app.last_export == cast  # type: ignore[attr-defined]

    run_app(app, scenario)
    exported = sorted(p.name for p in (tmp_path / "exports").iterdir())
    assert exported == [FILES["ssh"].replace(".wgrec", ".cast"),
                        FILES["ssh"].replace(".wgrec", ".jsonl")]


def test_help_screen_lists_the_keys(make_app: AppFactory) -> None:
    async def scenario(pilot: Pilot[Any]) -> None:
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(pilot.app.screen, HelpScreen)
        assert "real-time mode" in assert_no_raw_control(pilot.app)
        await pilot.press("escape")
        assert isinstance(pilot.app.screen, BrowserScreen)

    run_app(make_app(), scenario)


# -- hostile and damaged recordings -----------------------------------------------------------
def test_hostile_recording_opens_safely(make_app: AppFactory, recordings: Path) -> None:
    app = make_app(open_path=session_file(recordings, "hostile"))

    async def scenario(pilot: Pilot[Any]) -> None:
        screen = pilot.app.screen
        assert isinstance(screen, SessionScreen) and screen.model is not None
        for index in range(len(screen.model.events)):
            await pilot.press("full_stop" if index else "left_square_bracket")
            await pilot.pause()
            plain = assert_no_raw_control(pilot.app)
            assert "VERIFIED" in plain
        assert "␛]52;c;" in plain  # the attack is visible, as text

    run_app(app, scenario)


def test_terminal_session_with_escape_attacks_renders_inert(
    make_app: AppFactory, recordings: Path
) -> None:
    app = make_app(open_path=session_file(recordings, "ssh"))

    async def scenario(pilot: Pilot[Any]) -> None:
        await pilot.press("n", "n", "full_stop")  # the output of `cat notes.txt`
        await pilot.pause()
        terminal = static_text(pilot.app, "#terminal")
        assert "click-meC1-CSI-red" in terminal
        assert "pwned-title" not in terminal and "evil.example" not in terminal
        assert_no_raw_control(pilot.app)

    run_app(app, scenario)


def test_integrity_state_is_shown_for_damaged_files(make_app: AppFactory) -> None:
    expected = {
        "golden-pg-crash": ("TRUNCATED", "file ends inside frame 15"),
        "golden-pg-tampered": ("TAMPERED", "frame 4: hash chain broken"),
        "golden-pg-forged": ("TAMPERED", "signature invalid"),
        "golden-pg-0001": ("VERIFIED", "signed by key"),
    }

    async def scenario(pilot: Pilot[Any]) -> None:
        for name, (badge, message) in expected.items():
            await open_session(pilot, name)
            header = static_text(pilot.app, "#session-header")
            assert f" {badge} " in header and message in header, name
            assert_no_raw_control(pilot.app)
            await pilot.press("escape")

    run_app(make_app(), scenario)


def test_without_a_key_sessions_are_unsigned(make_app: AppFactory, recordings: Path) -> None:
    app = make_app(public_key=None, open_path=session_file(recordings, "forged"))

    async def scenario(pilot: Pilot[Any]) -> None:
        assert " UNSIGNED " in static_text(pilot.app, "#session-header")

    run_app(app, scenario)


def test_a_file_that_is_not_a_recording_is_reported(make_app: AppFactory, tmp_path: Path) -> None:
    junk = tmp_path / "junk.wgrec"
    junk.write_bytes(b"\x1b]52;c;ZXZpbA==\x07 not a recording")
    app = make_app(root=tmp_path, open_path=junk)

    async def scenario(pilot: Pilot[Any]) -> None:
        header = static_text(pilot.app, "#session-header")
        assert "UNREADABLE" in header and "not a wardgate recording" in header
        assert_no_raw_control(pilot.app)

    run_app(app, scenario)


# -- entry point ------------------------------------------------------------------------------
def test_main_refuses_a_missing_path(tmp_path: Path, capsys: Any) -> None:
    assert main(tmp_path / "nope", tmp_path, None) == 2
    assert "does not exist" in capsys.readouterr().err


def test_public_key_sources(tmp_path: Path, public_key: Ed25519PublicKey) -> None:
    key = signing_key()
    pub = tmp_path / "pub.pem"
    pub.write_bytes(key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    private = tmp_path / "key.pem"
    private.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"-----BEGIN NOTHING-----\n")
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    for source in (pub, private, public_key):
        loaded, problem = load_public_key(source)
        assert loaded is not None and problem is None
        assert loaded.public_bytes(Encoding.Raw, PublicFormat.Raw) == raw
    assert load_public_key(None) == (None, "no public key given")
    loaded, problem = load_public_key(tmp_path / "missing.pem")
    assert loaded is None and problem is not None and "not readable" in problem
    loaded, problem = load_public_key(garbage)
    assert loaded is None and problem is not None and "not a PEM" in problem
