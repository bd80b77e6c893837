"""Modal screens: the key reference and the jump-to-time prompt."""

from __future__ import annotations

from typing import ClassVar, Final

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Static

KEYS: Final = (
    ("Anywhere", (
        ("?", "this help"),
        ("ctrl+q", "quit"),
    )),
    ("Session browser", (
        ("↑ ↓ / mouse", "move between sessions"),
        ("enter / click", "open the session"),
        ("s / click a header", "sort by the next column (click: by that column)"),
        ("o", "reverse the sort order"),
        ("/", "full-text search in statements"),
        ("f", "filters: identity, target, protocol, from, to (YYYY-MM-DD), decision"),
        ("escape", "back to the table"),
        ("c", "clear all filters"),
        ("ctrl+r", "re-scan the recordings directory"),
        ("q", "quit"),
    )),
    ("Session view", (
        ("space", "play / pause"),
        ("+ / -", "speed (0.5x … 16x)"),
        ("r", "real-time mode (no idle-gap compression)"),
        ("n / p", "next / previous command"),
        (". / ,", "next / previous event"),
        ("[ / ]", "first / last event"),
        ("g", "jump to a time (90, 1:30, +10, -5)"),
        ("↑ ↓ / click", "select an event (the playhead follows)"),
        ("e", "export the session as JSON lines"),
        ("a", "export a terminal session as asciicast v2"),
        ("escape / q", "back to the browser"),
    )),
)


def help_table() -> Table:
    table = Table(show_header=False, box=None, pad_edge=False, expand=True)
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column()
    for section, keys in KEYS:
        table.add_row(Text(section, style="bold underline"), "")
        for key, what in keys:
            table.add_row(key, what)
        table.add_row("", "")
    return table


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll {
        width: 80; max-width: 95%; height: auto; max-height: 90%;
        border: thick $accent; background: $surface; padding: 1 2;
    }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "dismiss", "Close"),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(Text("wardgate replay: keys", style="bold"))
            yield Static(help_table())
            yield Static(Text("Recorded text shows control characters as visible stand-ins\n"
                              "(␛ for ESC); terminal output is replayed through an emulator,\n"
                              "never sent to this terminal.", style="dim"))


class JumpScreen(ModalScreen[str | None]):
    """Asks for a time; returns the text typed (parsed by the caller) or None."""

    DEFAULT_CSS = """
    JumpScreen { align: center middle; }
    JumpScreen > Vertical {
        width: 50; height: auto; border: thick $accent; background: $surface; padding: 1 2;
    }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, blink: bool = True) -> None:
        super().__init__()
        self._blink = blink

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text("Jump to time (seconds, m:ss, or +/- offset)"))
            field = Input(placeholder="e.g. 41.3 or 1:30 or +10", id="jump-input")
            field.cursor_blink = self._blink
            yield field

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)
