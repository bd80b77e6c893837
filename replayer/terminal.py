"""Terminal playback: recorded output replayed into a pyte screen, shown cell by cell.

The auditor's terminal never sees a recorded byte. Output passes through
:class:`replayer.ansi.TerminalFilter` (which drops everything that is not drawing) into pyte,
and the widget shows only the characters and colours of pyte's screen buffer, each cell
checked once more by :func:`replayer.sanitize.clean_cell_char`.

pyte parses about 300 KB/s, so the work per seek is bounded: one record feeds at most
``FEED_CAP`` bytes (its tail), backward seeks restart from the nearest checkpoint (a copy of
the screen taken every ``CHECKPOINT_BYTES``), and a forward jump over more than
``JUMP_BUDGET`` bytes feeds only the last ``JUMP_BUDGET`` bytes before the target on a fresh
screen. Skipped output makes the screen ``approximate``, which the view says.
"""

from __future__ import annotations

import copy
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Final, NamedTuple

import pyte
from pyte.screens import StaticDefaultDict
from rich.color import Color, ColorParseError
from rich.style import Style
from rich.text import Text

from replayer.ansi import TerminalFilter, make_decoder
from replayer.playback import running_max
from replayer.sanitize import clean_cell_char

FEED_CAP: Final = 256 * 1024
CHECKPOINT_BYTES: Final = 64 * 1024
JUMP_BUDGET: Final = 256 * 1024
MAX_CHECKPOINTS: Final = 128
FEED_PIECE: Final = 4096  # plain text is fed in pieces of this size
# What TerminalFilter lets through: CSI sequences, and ESC with one or two characters.
_SEQUENCE: Final = re.compile(r"(\x1b\[[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]|\x1b[()][\x20-\x7e]|\x1b[\x20-\x7e])")
MAX_COLS: Final = 500
MAX_ROWS: Final = 200
DEFAULT_SIZE: Final = (80, 24)


class TermChunk(NamedTuple):
    t: float
    op: str  # "o": output bytes, "r": resize (cols, rows)
    data: bytes
    size: tuple[int, int]


def clamp_size(cols: object, rows: object) -> tuple[int, int] | None:
    """A recorded terminal size, bounded; None when it is not a pair of positive ints."""
    if isinstance(cols, bool) or isinstance(rows, bool):
        return None
    if not isinstance(cols, int) or not isinstance(rows, int) or cols <= 0 or rows <= 0:
        return None
    return min(cols, MAX_COLS), min(rows, MAX_ROWS)


@dataclass
class _Checkpoint:
    index: int  # chunks applied
    screen: pyte.Screen
    approximate: bool


@dataclass
class TerminalPlayer:
    """The screen after the first ``position`` chunks."""

    chunks: list[TermChunk]
    initial_size: tuple[int, int] = DEFAULT_SIZE
    position: int = 0
    approximate: bool = False
    skipped_bytes: int = 0
    parse_errors: int = 0
    _checkpoints: list[_Checkpoint] = field(default_factory=list)
    _since_checkpoint: int = 0

    def __post_init__(self) -> None:
        self.times = running_max([c.t for c in self.chunks])
        self._fresh_screen(self.initial_size)
        self._checkpoints = [_Checkpoint(0, _copy_screen(self.screen), False)]

    # -- seeking -----------------------------------------------------------------------------
    def index_at(self, t: float) -> int:
        """Number of chunks whose time is at or before ``t``."""
        lo, hi = 0, len(self.times)
        while lo < hi:
            mid = (lo + hi) // 2
            if self.times[mid] <= t:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def seek_time(self, t: float) -> None:
        self.seek_index(self.index_at(t))

    def seek_index(self, target: int) -> None:
        target = max(0, min(target, len(self.chunks)))
        if target == self.position:
            return
        if target < self.position:
            self._restore(target)
        if self._cost(self.position, target) > JUMP_BUDGET:
            self._jump_approximately(target)
            return
        for i in range(self.position, target):
            self._apply(i)

    def _cost(self, start: int, stop: int) -> int:
        total = 0
        for i in range(start, stop):
            chunk = self.chunks[i]
            if chunk.op == "o":
                total += min(len(chunk.data), FEED_CAP)
                if total > JUMP_BUDGET:
                    break
        return total

    def _restore(self, target: int) -> None:
        best = self._checkpoints[0]
        for cp in self._checkpoints:
            if cp.index <= target:
                best = cp
        self._attach(_copy_screen(best.screen))
        self.position = best.index
        self.approximate = best.approximate
        self._since_checkpoint = 0

    def _jump_approximately(self, target: int) -> None:
        # Walk back from the target until the budget is spent; the screen size in force at
        # the window's start is the last resize before it.
        budget = JUMP_BUDGET
        start = target
        while start > 0 and budget > 0:
            start -= 1
            chunk = self.chunks[start]
            if chunk.op == "o":
                budget -= min(len(chunk.data), FEED_CAP)
        size = self.initial_size
        for i in range(start - 1, -1, -1):
            if self.chunks[i].op == "r":
                size = self.chunks[i].size
                break
        self._fresh_screen(size)
        self.approximate = True
        self.position = start
        for i in range(start, target):
            self._apply(i)

    # -- feeding -----------------------------------------------------------------------------
    def _fresh_screen(self, size: tuple[int, int]) -> None:
        self._attach(pyte.Screen(*size))

    def _attach(self, screen: pyte.Screen) -> None:
        self.screen = screen
        self._stream = pyte.Stream(screen)
        self._filter = TerminalFilter()
        self._decoder = make_decoder()

    def _apply(self, index: int) -> None:
        chunk = self.chunks[index]
        if chunk.op == "r":
            cols, rows = chunk.size
            self.screen.resize(lines=rows, columns=cols)
        elif chunk.op == "o":
            data = chunk.data
            if len(data) > FEED_CAP:
                # The tail decides what the screen shows; the head would cost seconds.
                self.skipped_bytes += len(data) - FEED_CAP
                self.approximate = True
                data = data[-FEED_CAP:]
                self._decoder.reset()
                self._filter.reset()
            self._feed(self._filter.feed(self._decoder.decode(data)))
            self._since_checkpoint += len(data)
        self.position = index + 1
        if self._since_checkpoint >= CHECKPOINT_BYTES and self._quiescent():
            self._checkpoint()

    def _feed(self, text: str) -> None:
        # One escape sequence per feed: pyte raises on some (a 5000-digit parameter, too many
        # parameters) and resets its parser, so only that sequence is lost, not the text after.
        for token in _SEQUENCE.split(text):
            for start in range(0, len(token), FEED_PIECE):
                try:
                    self._stream.feed(token[start : start + FEED_PIECE])
                except Exception:  # noqa: BLE001 - pyte raises assorted errors on odd input
                    self.parse_errors += 1

    def _quiescent(self) -> bool:
        # A copy taken mid-sequence would lose the sequence's start on restore.
        return (
            self._filter.in_ground
            and bool(getattr(self._stream, "_taking_plain_text", False))
            and self._decoder.getstate()[0] == b""
        )

    def _checkpoint(self) -> None:
        self._since_checkpoint = 0
        if self._checkpoints and self._checkpoints[-1].index >= self.position:
            return
        self._checkpoints.append(
            _Checkpoint(self.position, _copy_screen(self.screen), self.approximate)
        )
        if len(self._checkpoints) > MAX_CHECKPOINTS:
            # Keep the first and every other one: spacing doubles, memory stays bounded.
            self._checkpoints = self._checkpoints[:1] + self._checkpoints[2::2]

    # -- rendering ---------------------------------------------------------------------------
    def render(self) -> Text:
        """The screen as styled text: characters and colours only, nothing else."""
        screen = self.screen
        out = Text(no_wrap=True, end="")
        cursor = screen.cursor
        for y in range(screen.lines):
            line = screen.buffer[y]
            run_style: Style | None = None
            run: list[str] = []
            for x in range(screen.columns):
                char = line[x]
                data = char.data
                if data == "":
                    continue  # right half of a wide character
                style = _style_of(char, cursor_here=(not cursor.hidden and x == cursor.x
                                                     and y == cursor.y))
                if style != run_style and run:
                    out.append("".join(run), run_style)
                    run = []
                run_style = style
                run.append(clean_cell_char(data))
            if run:
                out.append("".join(run), run_style)
            if y < screen.lines - 1:
                out.append("\n")
        return out

    @property
    def size(self) -> tuple[int, int]:
        return self.screen.columns, self.screen.lines


def _copy_screen(screen: pyte.Screen) -> pyte.Screen:
    clone: pyte.Screen = copy.deepcopy(screen)
    # The buffer's default factory is a lambda over the *original* screen; rebind it.
    buffer: defaultdict[int, StaticDefaultDict[int, pyte.screens.Char]] = defaultdict(
        lambda: StaticDefaultDict(clone.default_char)
    )
    buffer.update(clone.buffer)
    clone.buffer = buffer
    return clone


_NAMED = {
    "black": "black",
    "red": "red",
    "green": "green",
    "brown": "yellow",
    "blue": "blue",
    "magenta": "magenta",
    "cyan": "cyan",
    "white": "white",
}
_STYLE_CACHE: dict[tuple[object, ...], Style] = {}


def _color(name: str) -> Color | None:
    if name == "default" or not name:
        return None
    bright = name.startswith("bright")
    base = name[6:] if bright else name
    if base in _NAMED:
        return Color.parse(("bright_" if bright else "") + _NAMED[base])
    if len(name) == 6:
        try:
            return Color.parse("#" + name)
        except ColorParseError:
            return None
    return None


def _style_of(char: pyte.screens.Char, *, cursor_here: bool) -> Style:
    key = (char.fg, char.bg, char.bold, char.italics, char.underscore, char.strikethrough,
           char.reverse, cursor_here)
    style = _STYLE_CACHE.get(key)
    if style is None:
        style = Style(
            color=_color(char.fg),
            bgcolor=_color(char.bg),
            bold=char.bold or None,
            italic=char.italics or None,
            underline=char.underscore or None,
            strike=char.strikethrough or None,
            # The cursor is drawn as an inverted cell; blink is never reproduced.
            reverse=(char.reverse != cursor_here) or None,
        )
        if len(_STYLE_CACHE) < 4096:
            _STYLE_CACHE[key] = style
    return style
