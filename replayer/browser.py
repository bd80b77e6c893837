"""The session browser: every recording under a directory, filtered and sorted."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Final

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import DataTable, Footer, Input, Select, Static
from textual.worker import get_current_worker

from replayer.filters import DECISIONS, SORT_KEYS, Filters, apply_filters, parse_day, sort_sessions
from replayer.index import SessionSummary
from replayer.model import format_started
from replayer.sanitize import CELL_LIMIT, clean, format_offset, safe_text
from replayer.session_view import SessionScreen

if TYPE_CHECKING:
    from replayer.app import ReplayApp

MAX_ROWS: Final = 1000  # rows in the table; more matches ask for a narrower filter
DEBOUNCE: Final = 0.15  # seconds after the last keystroke before filtering
MERGE_INTERVAL: Final = 1.5  # seconds between redraws while the index is being built
COLUMNS: Final = (
    ("started", "started (UTC)"),
    ("identity", "identity"),
    ("groups", "groups"),
    ("target", "target"),
    ("protocol", "protocol"),
    ("duration", "duration"),
    ("commands", "cmds"),
    ("denied", "denied"),
    ("reviewed", "reviewed"),
    ("integrity", "integrity"),
)
INTEGRITY_CELL: Final = {
    "verified": ("verified", "green"),
    "unsigned": ("unsigned", "yellow"),
    "truncated": ("truncated", "bold yellow"),
    "tampered": ("TAMPERED", "bold white on red"),
    "unreadable": ("unreadable", "bold red"),
}
FILTER_INPUTS: Final = (
    ("identity", "identity or group"),
    ("target", "target"),
    ("protocol", "protocol"),
    ("since", "from YYYY-MM-DD"),
    ("until", "to YYYY-MM-DD"),
)


def summary_row(s: SessionSummary) -> tuple[Text, ...]:
    label, style = INTEGRITY_CELL.get(s.integrity, (s.integrity, "red"))
    denied_style = "bold red" if s.denied else "dim"
    reviewed_style = "bold yellow" if s.reviewed else "dim"
    return (
        Text(format_started(s.started)),
        safe_text(s.identity, 24, style="bold", count_cut=False),
        safe_text(", ".join(s.groups), 24, count_cut=False),
        safe_text(s.target, 20, count_cut=False),
        safe_text(s.protocol, 10, count_cut=False),
        Text(format_offset(s.duration), justify="right"),
        Text(str(s.commands), justify="right"),
        Text(str(s.denied), justify="right", style=denied_style),
        Text(str(s.reviewed), justify="right", style=reviewed_style),
        Text(label, style=style),
    )


class BrowserScreen(Screen[None]):
    DEFAULT_CSS = """
    BrowserScreen { layout: vertical; }
    #browser-title { height: 1; padding: 0 1; background: $boost; }
    #filters { height: 1; margin: 1 0; }
    #filters Input { width: 1fr; margin: 0 1 0 0; }
    #filters Select { width: 14; margin: 0 1 0 0; }
    #filters #search { width: 2fr; margin: 0; }
    #sessions { height: 1fr; }
    #browser-status { height: 1; padding: 0 1; background: $boost; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "cycle_sort", "Sort"),
        Binding("o", "reverse_sort", "Order"),
        Binding("slash", "focus_search", "Search"),
        Binding("f", "focus_filters", "Filters"),
        Binding("c", "clear_filters", "Clear"),
        Binding("escape", "focus_table", "Table", show=False),
        Binding("ctrl+r", "rescan", "Rescan"),
        Binding("q", "app.quit", "Quit"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.sessions: dict[str, SessionSummary] = {}
        self.shown_sessions: list[SessionSummary] = []
        self.sort_column = "started"
        self.descending = True
        self.filters = Filters()
        self.indexing = False
        self._debounce: Timer | None = None
        self._merge_timer: Timer | None = None

    @property
    def replay_app(self) -> ReplayApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Static(Text(""), id="browser-title")
        with Horizontal(id="filters"):
            for name, placeholder in FILTER_INPUTS:
                yield Input(placeholder=placeholder, id=f"filter-{name}", compact=True)
            yield Select([(d, d) for d in DECISIONS], value="any", allow_blank=False,
                         id="filter-decision", compact=True)
            yield Input(placeholder="search statements", id="search", compact=True)
        table: DataTable[Text] = DataTable(id="sessions", cursor_type="row", zebra_stripes=True)
        yield table
        yield Static(Text(""), id="browser-status")
        yield Footer()

    def on_mount(self) -> None:
        app = self.replay_app
        for field in self.query(Input):
            field.cursor_blink = app.blink
        title = Text("wardgate replay  ", style="bold")
        title.append(safe_text(str(app.root), 200, style="dim"))
        self.query_one("#browser-title", Static).update(title)
        table = self.query_one("#sessions", DataTable)
        for key, label in COLUMNS:
            table.add_column(label, key=key)
        table.focus()
        for s in app.index.cached(app.root):
            self.sessions[s.path] = s
        self.render_table()
        self.rescan()

    # -- index -------------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="index", exit_on_error=False)
    def rescan(self) -> None:
        """Bring the index up to date in a thread; rows appear as batches are read."""
        app = self.replay_app
        worker = get_current_worker()
        self.app.call_from_thread(self._set_indexing, True)
        try:
            result = app.index.refresh(
                app.root, app.public_key,
                on_batch=lambda batch: self.app.call_from_thread(self._merge, batch),
                cancelled=lambda: worker.is_cancelled,
            )
        except Exception as exc:  # noqa: BLE001 - the cached rows stay usable
            self.app.call_from_thread(self._index_failed, repr(exc))
            return
        if not worker.is_cancelled:
            self.app.call_from_thread(self._replace_all, result)

    def _index_failed(self, problem: str) -> None:
        self.replay_app.index.problem = f"indexing stopped: {problem}"
        self._set_indexing(False)

    def _set_indexing(self, value: bool) -> None:
        self.indexing = value
        self._update_status()

    def _merge(self, batch: list[SessionSummary]) -> None:
        for s in batch:
            self.sessions[s.path] = s
        # A first scan of thousands of files sends hundreds of batches: redraw at most twice
        # a second rather than once per batch.
        if self._merge_timer is None:
            self._merge_timer = self.set_timer(MERGE_INTERVAL, self._merged)

    def _merged(self) -> None:
        self._merge_timer = None
        self.render_table()

    def _replace_all(self, result: list[SessionSummary]) -> None:
        if self._merge_timer is not None:
            self._merge_timer.stop()
            self._merge_timer = None
        self.sessions = {s.path: s for s in result}
        self.indexing = False
        self.render_table()

    # -- table -------------------------------------------------------------------------------
    def render_table(self) -> None:
        hits = None
        if self.filters.search.strip():
            hits = self.replay_app.index.search(self.filters.search.strip())
        matching = apply_filters(self.sessions.values(), self.filters, hits)
        self.shown_sessions = sort_sessions(matching, self.sort_column, self.descending)
        table = self.query_one("#sessions", DataTable)
        selected = self.selected_path()
        table.clear()
        shown = self.shown_sessions[:MAX_ROWS]
        for s in shown:
            table.add_row(*summary_row(s), key=s.path)
        for n, (key, label) in enumerate(COLUMNS):
            arrow = (" ▼" if self.descending else " ▲") if key == self.sort_column else ""
            table.ordered_columns[n].label = Text(label + arrow)
        if selected is not None:
            for row, s in enumerate(shown):
                if s.path == selected:
                    table.move_cursor(row=row)
                    break
        self._update_status()

    def selected_path(self) -> str | None:
        table = self.query_one("#sessions", DataTable)
        if table.row_count == 0:
            return None
        row = table.cursor_row
        return self.shown_sessions[row].path if 0 <= row < len(self.shown_sessions) else None

    def _update_status(self) -> None:
        total = len(self.sessions)
        text = Text(f"{len(self.shown_sessions)} of {total} sessions  ")
        if len(self.shown_sessions) > MAX_ROWS:
            text.append(f" (first {MAX_ROWS} shown: narrow the filters)", style="yellow")
        tampered = sum(1 for s in self.sessions.values() if s.integrity == "tampered")
        if tampered:
            text.append(f"{tampered} TAMPERED  ", style="bold red")
        for name in ("since", "until"):
            value = getattr(self.filters, name)
            if value.strip() and parse_day(value) is None:
                text.append(f"  '{clean(value, 20)}' is not YYYY-MM-DD (ignored)", style="yellow")
        app = self.replay_app
        if app.public_key is None:
            text.append("  no public key: signatures not checked", style="yellow")
        if app.index.problem:
            text.append(f"  {clean(app.index.problem, CELL_LIMIT)}", style="dim")
        if self.indexing:
            text.append("  indexing…", style="italic")
        self.query_one("#browser-status", Static).update(text)

    # -- filters -----------------------------------------------------------------------------
    def _read_filters(self) -> Filters:
        values = {name: self.query_one(f"#filter-{name}", Input).value
                  for name, _ in FILTER_INPUTS}
        decision = self.query_one("#filter-decision", Select).value
        return Filters(
            decision=decision if isinstance(decision, str) else "any",
            search=self.query_one("#search", Input).value,
            **values,
        )

    @on(Input.Changed)
    @on(Select.Changed)
    def _filters_changed(self) -> None:
        if self._debounce is not None:
            self._debounce.stop()
        self._debounce = self.set_timer(DEBOUNCE, self.apply_filters)

    @on(Input.Submitted)
    def _filters_submitted(self) -> None:
        self.apply_filters()
        self.query_one("#sessions", DataTable).focus()

    def apply_filters(self) -> None:
        filters = self._read_filters()
        if filters != self.filters:
            self.filters = filters
            self.render_table()

    def action_clear_filters(self) -> None:
        for field in self.query(Input):
            field.value = ""
        self.query_one("#filter-decision", Select).value = "any"
        self.apply_filters()

    def action_focus_search(self) -> None:
        self.query_one("#search", Input).focus()

    def action_focus_filters(self) -> None:
        self.query_one("#filter-identity", Input).focus()

    def action_focus_table(self) -> None:
        self.query_one("#sessions", DataTable).focus()

    # -- sorting -----------------------------------------------------------------------------
    def sort_by(self, column: str) -> None:
        if column == self.sort_column:
            self.descending = not self.descending
        else:
            self.sort_column = column
            self.descending = column in ("started", "duration", "commands", "denied", "reviewed")
        self.render_table()

    def action_cycle_sort(self) -> None:
        keys = list(SORT_KEYS)
        following = keys[(keys.index(self.sort_column) + 1) % len(keys)]
        self.sort_by(following)

    def action_reverse_sort(self) -> None:
        self.descending = not self.descending
        self.render_table()

    @on(DataTable.HeaderSelected, "#sessions")
    def _header_selected(self, event: DataTable.HeaderSelected) -> None:
        self.sort_by(str(event.column_key.value))

    def action_rescan(self) -> None:
        self.rescan()

    # -- opening -----------------------------------------------------------------------------
    @on(DataTable.RowSelected, "#sessions")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        self.open_session(str(event.row_key.value))

    def action_open(self) -> None:
        path = self.selected_path()
        if path is not None:
            self.open_session(path)

    def open_session(self, path: str) -> None:
        self.app.push_screen(SessionScreen(Path(path)))
