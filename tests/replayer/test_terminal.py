"""Terminal playback through pyte: what the auditor sees, and what never reaches them."""

from __future__ import annotations

import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.recording.reader import read_recording
from replayer.model import build_model
from replayer.terminal import FEED_CAP, TermChunk, TerminalPlayer
from tests.replayer.conftest import golden

CONTROL = {chr(c) for c in range(0x20)} - {"\n"} | {chr(c) for c in range(0x7F, 0xA0)}


def screen_lines(player: TerminalPlayer) -> list[str]:
    return player.render().plain.split("\n")


def ssh_player(public_key: Ed25519PublicKey) -> TerminalPlayer:
    path = golden("ssh")
    model = build_model(path, read_recording(path, public_key=public_key))
    return TerminalPlayer(model.terminal, model.terminal_size)


def test_recorded_session_replays_to_its_final_screen(public_key: Ed25519PublicKey) -> None:
    player = ssh_player(public_key)
    player.seek_index(len(player.chunks))
    lines = screen_lines(player)
    assert player.size == (100, 30)  # the recorded resize was applied
    assert lines[0].startswith("Welcome to web-1 (Debian 13)")
    assert lines[1].startswith("deploy@web-1:~$ ls -l /var/www")
    assert any("wardgate: denied by rule no-recursive-delete" in line for line in lines)
    assert not player.approximate


def test_hostile_output_renders_only_characters(public_key: Ed25519PublicKey) -> None:
    player = ssh_player(public_key)
    player.seek_index(len(player.chunks))
    text = player.render()
    assert not set(text.plain) & CONTROL
    hostile = next(line for line in text.plain.split("\n") if "click-me" in line)
    # The link text and the C1-coloured text are drawn; the sequences around them are gone.
    assert hostile.startswith("click-meC1-CSI-red\ufffdraw-8bit[bold red]not-markup[/] \ufffdesrever")
    assert "52;c;" not in text.plain and "pwned-title" not in text.plain
    assert "evil.example" not in text.plain
    assert player.screen.title == ""  # OSC 0 never reached pyte either
    assert all(span.style.link is None for span in text.spans)  # type: ignore[union-attr]


def test_seeking_back_gives_the_same_screen_as_playing_forward(
    public_key: Ed25519PublicKey,
) -> None:
    forward = ssh_player(public_key)
    expected = []
    for i in range(len(forward.chunks) + 1):
        forward.seek_index(i)
        expected.append(forward.render().plain)
    backward = ssh_player(public_key)
    backward.seek_index(len(backward.chunks))
    for i in reversed(range(len(backward.chunks) + 1)):
        backward.seek_index(i)
        assert backward.render().plain == expected[i], i


def test_checkpoints_make_backward_seeks_cheap() -> None:
    line = b"\x1b[32mok\x1b[0m line of output that scrolls by\r\n"
    chunks = [TermChunk(i * 0.01, "o", line * 120, (0, 0)) for i in range(40)]  # ~250 KB
    player = TerminalPlayer(chunks)
    for i in range(0, len(chunks) + 1, 2):  # as playback does: a little at a time
        player.seek_index(i)
    assert not player.approximate
    assert len(player._checkpoints) >= 3
    start = time.perf_counter()
    player.seek_index(30)
    assert time.perf_counter() - start < 1.0
    fresh = TerminalPlayer(chunks)
    for i in range(0, 31, 2):
        fresh.seek_index(i)
    assert player.render().plain == fresh.render().plain


def test_ten_megabyte_output_record_does_not_freeze_playback() -> None:
    chunks = [TermChunk(0.0, "o", b"\x1b[31m" + b"A" * (10 << 20) + b"\r\nend", (0, 0))]
    player = TerminalPlayer(chunks)
    start = time.perf_counter()
    player.seek_index(1)
    assert time.perf_counter() - start < 5
    assert player.approximate
    assert player.skipped_bytes >= (10 << 20) - FEED_CAP
    assert "end" in player.render().plain


def test_jump_over_much_output_is_bounded_and_marked_approximate() -> None:
    chunk = b"x" * 200_000 + b"\r\n"
    chunks = [TermChunk(float(i), "o", chunk, (0, 0)) for i in range(40)]  # 8 MB in total
    chunks.append(TermChunk(40.0, "o", b"\x1b[2J\x1b[Hlast screen", (0, 0)))
    player = TerminalPlayer(chunks)
    start = time.perf_counter()
    player.seek_time(40.0)
    assert time.perf_counter() - start < 5
    assert player.approximate
    assert screen_lines(player)[0].startswith("last screen")


def test_unparseable_sequences_do_not_break_the_stream() -> None:
    # pyte raises on these (too many parameters, a 5000-digit number); playback goes on.
    bad = b"\x1b[" + b"1;" * 30 + b"A" + b"\x1b[" + b"9" * 60 + b"m"
    chunks = [TermChunk(0.0, "o", bad + b"still drawing", (0, 0))]
    player = TerminalPlayer(chunks)
    player.seek_index(1)
    assert "still drawing" in player.render().plain


def test_hostile_terminal_size_is_clamped() -> None:
    chunks = [TermChunk(0.0, "r", b"", (500, 200)), TermChunk(0.1, "o", b"hi", (0, 0))]
    player = TerminalPlayer(chunks)
    player.seek_index(2)
    assert player.size == (500, 200)
