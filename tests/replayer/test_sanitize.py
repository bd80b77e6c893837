"""Recorded text shown to the auditor: control characters neutralised, markup inert, bounded."""

from __future__ import annotations

import time

from rich.console import Console

from replayer.sanitize import clean, clean_cell_char, compact, format_offset, safe_text

HOSTILE = "a\x1b]52;c;ZXZpbA==\x07b\x1b[2Jc\x9b6nd\u202ee\x00f\x7fg"


def test_escape_and_bell_become_visible_stand_ins() -> None:
    out = clean(HOSTILE)
    assert "\x1b" not in out and "\x07" not in out and "\x00" not in out and "\x7f" not in out
    assert out.startswith("a␛]52;c;ZXZpbA==␇b␛[2Jc")
    assert "<U+009B>" in out  # C1 CSI
    assert "<U+202E>" in out  # bidi override
    assert "␀f␡g" in out


def test_newlines_survive_only_in_multiline_mode() -> None:
    assert clean("a\nb\tc") == "a␊b␉c"
    assert clean("a\nb\tc", multiline=True) == "a\nb    c"


def test_rich_markup_in_recorded_text_stays_literal() -> None:
    text = safe_text("[bold red]root[/] [link=https://evil.example]x[/link]")
    assert text.plain == "[bold red]root[/] [link=https://evil.example]x[/link]"
    assert not text.spans
    console = Console(color_system="truecolor", force_terminal=True, width=200, record=True)
    with console.capture() as capture:
        console.print(text)
    assert "\x1b]8;" not in capture.get()  # no hyperlink was created


def test_a_ten_megabyte_value_is_cut_before_any_work() -> None:
    huge = b"\x1b[31m" * 2_000_000  # 10 MB
    start = time.perf_counter()
    out = clean(huge, 100)
    text = safe_text("x" * 10_000_000, 100)
    elapsed = time.perf_counter() - start
    assert elapsed < 0.1
    assert len(out) < 200 and out.endswith("more)")
    assert text.plain.startswith("x" * 100) and "(+9999900 more)" in text.plain


def test_bytes_that_are_not_utf8_are_shown_escaped() -> None:
    assert clean(b"ok\xff\xfe") == "ok\\xff\\xfe"


def test_compact_rendering_is_bounded_for_huge_containers() -> None:
    start = time.perf_counter()
    out = compact(list(range(1_000_000)), 50)
    assert time.perf_counter() - start < 0.1
    assert len(out) <= 50 and out.endswith("…")
    assert compact({"k": [1, b"x", None]}, 100) == "{'k': [1, b'x', None]}"


def test_terminal_cells_with_controls_become_replacement_characters() -> None:
    assert clean_cell_char("a") == "a"
    assert clean_cell_char("e\u0301") == "e\u0301"  # combining accent kept
    assert clean_cell_char("\x1b") == "\ufffd"
    assert clean_cell_char("\u202e") == "\ufffd"


def test_offsets_are_formatted_as_minutes_seconds_millis() -> None:
    assert format_offset(0.4121) == "00:00.412"
    assert format_offset(3725.5) == "1:02:05.500"
    assert format_offset(float("nan")) == "?"
