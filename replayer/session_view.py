"""The session view: header, timeline, detail pane, terminal screen and playback controls."""

from __future__ import annotations

import time
from bisect import bisect_right
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Final

from rich.console import RenderableType
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Button, DataTable, Footer, Static

from gateway.recording.reader import RecordingFormatError, read_recording
from replayer.detail import decision_text, render_event
from replayer.dialogs import JumpScreen
from replayer.export import export_asciicast, export_jsonl
from replayer.model import SessionModel, build_model, field_str, format_started
from replayer.playback import Playback, parse_time
from replayer.sanitize import LINE_LIMIT, format_offset, safe_text
from replayer.terminal import TerminalPlayer

if TYPE_CHECKING:
    from replayer.app import ReplayApp

TICK: Final = 1 / 20  # playback timer interval, seconds
ROW_BATCH: Final = 2000  # timeline rows added per step, so a huge session stays responsive
INTEGRITY_STYLE: Final = {
    "verified": ("VERIFIED", "bold white on dark_green"),
    "unsigned": ("UNSIGNED", "bold black on yellow"),
    "truncated": ("TRUNCATED", "bold black on yellow"),
    "tampered": ("TAMPERED", "bold white on red"),
}


def integrity_badge(status: str) -> Text:
    label, style = INTEGRITY_STYLE.get(status, (status.upper(), "bold white on red"))
    return Text(f" {label} ", style=style)


def header_text(model: SessionModel) -> Text:
    h = model.header
    ident = model.identity
    target = model.target
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append("Session ", style="dim")
    text.append(safe_text(model.session_id, 128, style="bold"))
    text.append("  protocol ", style="dim")
    text.append(safe_text(model.protocol or "?", 32))
    text.append("  started ", style="dim")
    text.append(f"{format_started(model.started)} UTC")
    text.append("  duration ", style="dim")
    text.append(format_offset(model.duration))
    text.append("\nIdentity ", style="dim")
    text.append(safe_text(field_str(ident, "sub", 200) or "?", 200, style="bold"))
    groups = ident.get("groups")
    if isinstance(groups, list) and groups:
        text.append(" (")
        text.append(safe_text(", ".join(field_str({"g": g}, "g", 64) for g in groups[:20]), 300))
        text.append(")")
    method = field_str(ident, "method", 32)
    if method:
        text.append("  via ", style="dim")
        text.append(safe_text(method, 32))
    text.append("\nTarget   ", style="dim")
    if target:
        text.append(safe_text(field_str(target, "name", 200) or "?", 200, style="bold"))
        for label, key in (("at", "address"), ("db", "database"), ("user", "user")):
            value = field_str(target, key, 200)
            if value:
                text.append(f"  {label} ", style="dim")
                text.append(safe_text(value, 60, count_cut=False))
    else:
        text.append(safe_text(h.get("target"), 200, style="bold"))
    text.append("  peer ", style="dim")
    text.append(safe_text(field_str(h, "peer", 100) or "?", 100))
    text.append("  gateway ", style="dim")
    text.append(safe_text(field_str(h, "gateway_version", 32) or "?", 32))
    text.append("\n")
    text.append(integrity_badge(model.integrity.status))
    text.append(" ")
    text.append(safe_text(model.integrity.message, LINE_LIMIT))
    commands, denied, reviewed = model.counts()
    text.append("\nRecorded ", style="dim")
    text.append(f"{commands} commands, ")
    text.append(f"{denied} denied", style="bold red" if denied else "")
    text.append(", ")
    text.append(f"{reviewed} reviewed", style="bold yellow" if reviewed else "")
    text.append("  ended ", style="dim")
    if model.end is not None:
        text.append(safe_text(field_str(model.end, "reason", 200) or "?", 200))
    else:
        text.append("(no end record: the recording stops early, what follows is missing)",
                    style="yellow")
    return text


class SessionScreen(Screen[None]):
    DEFAULT_CSS = """
    SessionScreen { layout: vertical; }
    #session-header {
        height: auto; max-height: 6; padding: 0 1; background: $boost;
        text-wrap: nowrap; text-overflow: ellipsis;
    }
    #session-body { height: 1fr; }
    #timeline { width: 2fr; min-width: 30; }
    #right { width: 3fr; }
    #terminal { height: auto; width: auto; border: round $accent; padding: 0 0; }
    /* A terminal keeps its recorded width; the timeline takes what is left. */
    SessionScreen.terminal-session #timeline { width: 1fr; }
    SessionScreen.terminal-session #right { max-width: 75%; }
    #detail { height: 1fr; border: round $panel; padding: 0 1; }
    #controls { height: 1; }
    #controls Button { min-width: 6; margin: 0 1 0 0; }
    #status { height: 1; padding: 0 1; background: $boost; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "toggle_play", "Play/Pause"),
        Binding("n", "next_command", "Next cmd"),
        Binding("p", "previous_command", "Prev cmd"),
        Binding("full_stop", "step(1)", "Step", show=False),
        Binding("comma", "step(-1)", "Step back", show=False),
        Binding("plus,equals_sign", "faster", "Faster"),
        Binding("minus", "slower", "Slower"),
        Binding("r", "toggle_real_time", "Real time"),
        Binding("g", "jump", "Jump"),
        Binding("left_square_bracket", "first", "First", show=False),
        Binding("right_square_bracket", "last", "Last", show=False),
        Binding("e", "export_jsonl", "Export JSONL"),
        Binding("a", "export_asciicast", "asciicast"),
        Binding("escape,q", "back", "Back"),
    ]

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.model: SessionModel | None = None
        self.playback: Playback | None = None
        self.player: TerminalPlayer | None = None
        self.load_error: str | None = None
        self._rows_added = 0
        self._last_tick = 0.0
        self._timer: Timer | None = None
        self._shown_index = -1
        self._shown_terminal: tuple[int, bool] | None = None

    @property
    def replay_app(self) -> ReplayApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Static(Text(f"loading {self.path.name} …"), id="session-header")
        with Horizontal(id="session-body"):
            table: DataTable[Text] = DataTable(id="timeline", cursor_type="row", zebra_stripes=True)
            yield table
            with Vertical(id="right"):
                terminal = Static(Text(""), id="terminal")
                terminal.display = False
                yield terminal
                with VerticalScroll(id="detail"):
                    yield Static(Text(""), id="detail-body")
        with Horizontal(id="controls"):
            for label, button_id in (("|<", "first"), ("<< cmd", "prev-cmd"), ("<", "step-back"),
                                     ("Play", "play"), (">", "step"), ("cmd >>", "next-cmd"),
                                     (">|", "last"), ("-", "slower"), ("+", "faster"),
                                     ("Real time", "real-time"), ("Jump", "jump")):
                button = Button(label, id=button_id, compact=True)
                button.can_focus = False  # keys stay with the timeline; the mouse still works
                yield button
        yield Static(Text(""), id="status")
        yield Footer()

    def on_mount(self) -> None:
        timeline = self.query_one("#timeline", DataTable)
        timeline.add_columns("time", "kind", "decision", "event")
        timeline.focus()
        self._timer = self.set_interval(TICK, self._tick, pause=True)
        self._load()

    @work(thread=True, exclusive=True, group="session-load", exit_on_error=False)
    def _load(self) -> None:
        # Reading and verifying can take seconds on a large file: never on the UI thread.
        try:
            recording = read_recording(self.path, public_key=self.replay_app.public_key)
            model = build_model(self.path, recording)
        except RecordingFormatError as exc:
            self.app.call_from_thread(self._show_error, str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - a file we cannot show must not end the app
            self.app.call_from_thread(self._show_error, f"cannot be shown: {exc!r}")
            return
        self.app.call_from_thread(self._show_model, model)

    def _show_error(self, message: str) -> None:
        if not self.is_attached:
            return  # the auditor left before the file was read
        self.load_error = message
        self.query_one("#session-header", Static).update(
            Text.assemble((" UNREADABLE ", "bold white on red"), " ",
                          safe_text(message, LINE_LIMIT))
        )

    def _show_model(self, model: SessionModel) -> None:
        if not self.is_attached:
            return  # the auditor left before the file was read
        self.model = model
        self.playback = Playback.for_events(
            [e.t for e in model.events], [e.t_end for e in model.events],
            model.command_indices, model.duration,
        )
        self.query_one("#session-header", Static).update(header_text(model))
        if model.is_terminal:
            self.player = TerminalPlayer(model.terminal, model.terminal_size)
            self.query_one("#terminal", Static).display = True
            self.add_class("terminal-session")
        self._add_rows()
        self._refresh_views()

    def _add_rows(self) -> None:
        assert self.model is not None
        timeline = self.query_one("#timeline", DataTable)
        events = self.model.events
        stop = min(self._rows_added + ROW_BATCH, len(events))
        timeline.add_rows(
            (
                Text(format_offset(e.t), style="dim"),
                safe_text(e.kind, 20),
                decision_text(e.decision),
                safe_text(e.summary, 160),
            )
            for e in events[self._rows_added : stop]
        )
        self._rows_added = stop
        if stop < len(events):
            self.set_timer(0.01, self._add_rows)
        elif self.model.events_dropped:
            timeline.add_row(Text(""), Text("…"), Text(""), Text(
                f"{self.model.events_dropped} more records not listed (export to see all)",
                style="dim italic"))

    # -- views -------------------------------------------------------------------------------
    def _refresh_views(self) -> None:
        model, pb = self.model, self.playback
        if model is None or pb is None:
            return
        if model.events and pb.index != self._shown_index:
            self._shown_index = pb.index
            timeline = self.query_one("#timeline", DataTable)
            if pb.index < timeline.row_count and timeline.cursor_row != pb.index:
                timeline.move_cursor(row=pb.index)
            try:
                detail: RenderableType = render_event(model, model.events[pb.index])
            except Exception as exc:  # noqa: BLE001 - one odd record must not end the app
                detail = Text.assemble(("cannot show this event: ", "bold red"),
                                       safe_text(repr(exc), LINE_LIMIT))
            self.query_one("#detail-body", Static).update(detail)
        if self.player is not None:
            self.player.seek_time(pb.t)
            self._show_terminal()
        self._update_status()

    def _show_terminal(self) -> None:
        player = self.player
        if player is None or (player.position, player.approximate) == self._shown_terminal:
            return  # time moved on, the screen did not: nothing to redraw
        self._shown_terminal = (player.position, player.approximate)
        terminal = self.query_one("#terminal", Static)
        terminal.update(player.render())
        cols, rows = player.size
        right = self.query_one("#right")
        if right.styles.width is None or right.styles.width.value != cols + 2:
            right.styles.width = cols + 2  # the recorded width plus the border
        title = f"terminal {cols}x{rows}"
        if player.approximate:
            title += " · approximate (output skipped to stay responsive)"
        terminal.border_title = title

    def _update_status(self) -> None:
        model, pb = self.model, self.playback
        if model is None or pb is None:
            return
        state = "▶ playing" if pb.playing else "⏸ paused"
        mode = "real time" if pb.real_time else "idle gaps ≤ 1 s"
        commands = model.command_indices
        current_cmd = bisect_right(commands, pb.index)
        text = Text(f"{state}  {pb.speed:g}x  {mode}  │  {format_offset(pb.t)} / "
                    f"{format_offset(pb.end)}  │  event {min(pb.index + 1, len(model.events))}/"
                    f"{len(model.events)}"
                    f"  │  command {current_cmd}/{len(commands)}")
        self.query_one("#status", Static).update(text)
        # Assigning an unchanged label or variant still redraws the button: 20 times a second.
        play = self.query_one("#play", Button)
        label = "Pause" if pb.playing else "Play"
        if str(play.label) != label:
            play.label = label
        real = self.query_one("#real-time", Button)
        variant = "primary" if pb.real_time else "default"
        if real.variant != variant:
            real.variant = variant

    # -- playback ----------------------------------------------------------------------------
    def _tick(self) -> None:
        pb = self.playback
        if pb is None:
            return
        now = time.monotonic()
        elapsed, self._last_tick = now - self._last_tick, now
        pb.tick(min(elapsed, 0.5))  # a stalled loop must not skip half the session
        if not pb.playing and self._timer is not None:
            self._timer.pause()
        self._refresh_views()

    def _set_playing(self) -> None:
        pb = self.playback
        if pb is None or self._timer is None:
            return
        if pb.playing:
            self._last_tick = time.monotonic()
            self._timer.resume()
        else:
            self._timer.pause()

    def action_toggle_play(self) -> None:
        if self.playback is not None:
            self.playback.toggle()
            self._set_playing()
            self._refresh_views()

    def _move(self, change: Callable[[Playback], object]) -> None:
        if self.playback is not None:
            change(self.playback)
            self._refresh_views()

    def action_next_command(self) -> None:
        self._move(Playback.next_command)

    def action_previous_command(self) -> None:
        self._move(Playback.previous_command)

    def action_step(self, delta: int) -> None:
        self._move(lambda pb: pb.step(delta))

    def action_first(self) -> None:
        self._move(lambda pb: pb.seek_index(0))

    def action_last(self) -> None:
        self._move(lambda pb: pb.seek_index(len(pb.starts) - 1))

    def action_faster(self) -> None:
        self._move(Playback.faster)

    def action_slower(self) -> None:
        self._move(Playback.slower)

    def action_toggle_real_time(self) -> None:
        if self.playback is not None:
            self.playback.real_time = not self.playback.real_time
            self._update_status()

    def action_jump(self) -> None:
        if self.playback is not None:
            self.app.push_screen(JumpScreen(self.replay_app.blink), self.jump_to)

    def jump_to(self, answer: str | None) -> None:
        pb = self.playback
        if pb is None or answer is None:
            return
        seconds = parse_time(answer)
        if seconds is None:
            self.notify(f"not a time: {safe_text(answer, 40).plain}", severity="warning",
                        markup=False)
            return
        relative = answer.strip()[:1] in "+-"
        pb.jump(pb.t + seconds if relative else seconds)
        self._refresh_views()

    def action_back(self) -> None:
        if self._timer is not None:
            self._timer.pause()
        self.dismiss(None)

    # -- export ------------------------------------------------------------------------------
    def action_export_jsonl(self) -> None:
        if self.model is None:
            return
        try:
            path = export_jsonl(self.model, self.replay_app.export_dir)
        except OSError as exc:
            self.notify(f"export failed: {exc}", severity="error", markup=False)
            return
        self.replay_app.last_export = path
        self.notify(f"exported {path}", title="JSON lines", markup=False)

    def action_export_asciicast(self) -> None:
        if self.model is None:
            return
        try:
            path = export_asciicast(self.model, self.replay_app.export_dir)
        except ValueError as exc:
            self.notify(str(exc), severity="warning", markup=False)
            return
        except OSError as exc:
            self.notify(f"export failed: {exc}", severity="error", markup=False)
            return
        self.replay_app.last_export = path
        self.notify(f"exported {path}", title="asciicast v2", markup=False)

    # -- input -------------------------------------------------------------------------------
    @on(DataTable.RowHighlighted, "#timeline")
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        pb = self.playback
        if pb is None or self.model is None or event.cursor_row >= len(self.model.events):
            return
        # Playback moves the cursor too, and its highlight messages arrive later: one that no
        # longer matches the cursor is stale, and acting on it would drag the playhead back.
        if event.cursor_row != event.data_table.cursor_row:
            return
        if event.cursor_row != pb.index:
            pb.seek_index(event.cursor_row)
            self._refresh_views()

    @on(Button.Pressed)
    def _button(self, event: Button.Pressed) -> None:
        actions = {
            "first": self.action_first, "prev-cmd": self.action_previous_command,
            "step-back": lambda: self.action_step(-1), "play": self.action_toggle_play,
            "step": lambda: self.action_step(1), "next-cmd": self.action_next_command,
            "last": self.action_last, "slower": self.action_slower,
            "faster": self.action_faster, "real-time": self.action_toggle_real_time,
            "jump": self.action_jump,
        }
        action = actions.get(event.button.id or "")
        if action is not None:
            action()

