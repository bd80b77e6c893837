"""Tamper evidence and crash recovery (HOSTILE.md I.52, I.54, I.55).

Like OpenSSH's regress/integrity.sh, every byte offset of a small file is cut and flipped, and
the test fails unless each change is reported with the exact frame it hit.
"""

from __future__ import annotations

from pathlib import Path

import msgpack  # type: ignore[import-untyped]
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.recording import format as fmt
from gateway.recording.reader import RecordingFormatError, read_recording, verify_recording
from tests.unit.test_recording import KEY, frame_spans, make_recording

PUB = KEY.public_key()


@pytest.fixture(scope="module")
def closed_file(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("rec") / "small.wgrec"
    make_recording(path)
    data = path.read_bytes()
    assert len(data) < 1024, "keep the every-offset tests small"
    assert len(frame_spans(data)) == 6  # header, 3 data frames, end frame, seal
    return data


def _write(tmp_path: Path, data: bytes, name: str = "x.wgrec") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _frames(data: bytes) -> list[bytes]:
    return [data[a:b] for a, b in frame_spans(data)]


def _frame_of(offset: int, spans: list[tuple[int, int]]) -> int:
    return next(i for i, (a, b) in enumerate(spans) if a <= offset < b)


def test_the_intact_file_verifies(tmp_path: Path, closed_file: bytes) -> None:
    rec = read_recording(_write(tmp_path, closed_file), public_key=PUB)
    assert rec.integrity.status == "verified", rec.integrity.message
    assert len(rec.records) == 4


# -- kill -9 / cut files (I.52) --------------------------------------------------------------


def test_truncate_at_every_offset_keeps_every_whole_frame(
    tmp_path: Path, closed_file: bytes
) -> None:
    full = read_recording(_write(tmp_path, closed_file), public_key=PUB)
    spans = frame_spans(closed_file)
    # Records carried by each data frame, so the expected prefix can be computed per cut.
    per_frame = [0, 1, 2, 1, 0, 0]  # header, query, rows+decision, output, end, seal
    path = tmp_path / "cut.wgrec"
    for cut in range(len(closed_file)):
        path.write_bytes(closed_file[:cut])
        rec = read_recording(path, public_key=PUB)
        whole = sum(1 for _a, b in spans if b <= cut)
        assert rec.integrity.status == "truncated", (cut, rec.integrity)
        assert rec.truncated
        assert rec.integrity.first_bad_frame == whole, (cut, rec.integrity)
        assert rec.records == full.records[: sum(per_frame[:whole])], cut
        assert rec.header == (full.header if whole >= 1 else {}), cut
        assert rec.end == (full.end if whole >= 5 else None), cut


def test_cut_inside_the_magic_is_truncated_not_rejected(tmp_path: Path) -> None:
    # An empty file is what a crash right after O_EXCL creation leaves.
    for data in (b"", b"WG", fmt.MAGIC):
        integrity = verify_recording(_write(tmp_path, data), PUB)
        assert (integrity.status, integrity.first_bad_frame) == ("truncated", 0)


def test_file_ending_after_the_end_frame_without_seal_is_truncated(
    tmp_path: Path, closed_file: bytes
) -> None:
    data = b"".join([fmt.MAGIC, *_frames(closed_file)[:-1]])
    rec = read_recording(_write(tmp_path, data), public_key=PUB)
    assert (rec.integrity.status, rec.integrity.first_bad_frame) == ("truncated", 5)
    assert rec.end == {"reason": "client closed"}


# -- flipped bits (I.54) ---------------------------------------------------------------------


def test_a_flipped_bit_at_every_offset_is_detected_in_the_right_frame(
    tmp_path: Path, closed_file: bytes
) -> None:
    """Contract: a flip inside the 6-byte magic makes the file "not a recording"
    (RecordingFormatError); a flip anywhere else is "tampered" naming the frame that holds the
    byte, including the frame header (its CRC catches length flips that would otherwise read
    as a cut file). Never "verified", never "truncated"."""
    spans = frame_spans(closed_file)
    path = tmp_path / "flip.wgrec"
    for offset in range(len(closed_file)):
        for bit in range(8):
            data = bytearray(closed_file)
            data[offset] ^= 1 << bit
            path.write_bytes(data)
            if offset < len(fmt.MAGIC):
                with pytest.raises(RecordingFormatError):
                    read_recording(path, public_key=PUB)
                continue
            integrity = read_recording(path, public_key=PUB).integrity
            assert integrity.status == "tampered", (offset, bit, integrity)
            assert integrity.first_bad_frame == _frame_of(offset, spans), (offset, bit, integrity)


def test_a_flip_is_detected_without_a_public_key_too(tmp_path: Path, closed_file: bytes) -> None:
    spans = frame_spans(closed_file)
    path = tmp_path / "flip.wgrec"
    for offset in range(len(fmt.MAGIC), len(closed_file)):
        data = bytearray(closed_file)
        data[offset] ^= 0x80
        path.write_bytes(data)
        integrity = verify_recording(path, None)
        assert (integrity.status, integrity.first_bad_frame) == (
            "tampered",
            _frame_of(offset, spans),
        ), offset


def test_records_before_the_damaged_frame_are_kept(tmp_path: Path, closed_file: bytes) -> None:
    a, b = frame_spans(closed_file)[3]
    data = bytearray(closed_file)
    data[(a + b) // 2] ^= 1
    rec = read_recording(_write(tmp_path, bytes(data)), public_key=PUB)
    assert (rec.integrity.status, rec.integrity.first_bad_frame) == ("tampered", 3)
    assert [r.kind for r in rec.records] == ["query", "rows", "decision"]
    assert rec.truncated


# -- dropped, moved, copied and foreign frames (I.54) ----------------------------------------


@pytest.mark.parametrize(
    ("name", "reorder", "bad"),
    [
        ("drop frame 2", lambda f: f[:2] + f[3:], 2),
        ("drop last data frame, keep seal", lambda f: f[:4] + f[5:], 4),
        ("swap frames 1 and 2", lambda f: [f[0], f[2], f[1], *f[3:]], 1),
        ("move frame 3 to the front", lambda f: [f[3], *f[:3], *f[4:]], 0),
        ("duplicate frame 1", lambda f: f[:2] + f[1:], 2),
        ("duplicate the seal", lambda f: [*f, f[-1]], 6),
        ("seal before the end frame", lambda f: [*f[:4], f[5], f[4]], 4),
    ],
)
def test_reordered_dropped_duplicated_frames_name_the_first_bad_frame(
    tmp_path: Path,
    closed_file: bytes,
    name: str,
    reorder: object,
    bad: int,
) -> None:
    assert callable(reorder)
    data = b"".join([fmt.MAGIC, *reorder(_frames(closed_file))])
    integrity = verify_recording(_write(tmp_path, data), PUB)
    assert (integrity.status, integrity.first_bad_frame) == ("tampered", bad), (name, integrity)


def test_frame_spliced_from_another_recording_is_detected(
    tmp_path: Path, closed_file: bytes
) -> None:
    # Same writer, same key, same record contents; only the session differs.
    make_recording(tmp_path / "other.wgrec", session_id="s-2")
    foreign = _frames((tmp_path / "other.wgrec").read_bytes())
    for index in range(1, 5):
        frames = _frames(closed_file)
        frames[index] = foreign[index]
        integrity = verify_recording(_write(tmp_path, b"".join([fmt.MAGIC, *frames])), PUB)
        assert (integrity.status, integrity.first_bad_frame) == ("tampered", index)


def test_whole_file_with_a_foreign_seal_is_detected(tmp_path: Path, closed_file: bytes) -> None:
    make_recording(tmp_path / "other.wgrec", session_id="s-2")
    foreign = _frames((tmp_path / "other.wgrec").read_bytes())
    frames = _frames(closed_file)
    frames[-1] = foreign[-1]
    integrity = verify_recording(_write(tmp_path, b"".join([fmt.MAGIC, *frames])), PUB)
    assert (integrity.status, integrity.first_bad_frame) == ("tampered", 5)


def test_bytes_after_the_seal_are_detected(tmp_path: Path, closed_file: bytes) -> None:
    integrity = verify_recording(_write(tmp_path, closed_file + b"\x00"), PUB)
    assert (integrity.status, integrity.first_bad_frame) == ("tampered", 6)
    assert "after the seal" in integrity.message


# -- keys and forgeries (I.55) ---------------------------------------------------------------


def test_wrong_public_key_is_rejected(tmp_path: Path, closed_file: bytes) -> None:
    other = Ed25519PrivateKey.generate().public_key()
    rec = read_recording(_write(tmp_path, closed_file), public_key=other)
    assert (rec.integrity.status, rec.integrity.first_bad_frame) == ("tampered", 5)
    assert "signature invalid" in rec.integrity.message
    assert len(rec.records) == 4  # the content is still shown, flagged
    assert rec.truncated is False


def test_well_formed_file_signed_by_another_key_is_rejected(tmp_path: Path) -> None:
    forger = Ed25519PrivateKey.generate()
    path = tmp_path / "forged.wgrec"
    make_recording(path, key=forger)
    assert verify_recording(path, forger.public_key()).status == "verified"
    integrity = verify_recording(path, PUB)
    assert (integrity.status, integrity.first_bad_frame) == ("tampered", 5)
    assert "signature invalid" in integrity.message


def test_forgery_that_claims_the_real_key_id_fails_the_signature(tmp_path: Path) -> None:
    """A forger rewrites the header and seal to name the real key; the chain is recomputed
    correctly, so only the Ed25519 signature can catch it."""
    real_id = fmt.key_id_of(PUB)
    forger = Ed25519PrivateKey.generate()
    header = {"v": 1, "session_id": "s-1", "key_id": real_id, "started": 1.0}
    bodies = [
        _zstd_records([[0.0, "header", header]]),
        _zstd_records([[1.0, "query", {"sql": "drop table audit"}], [2.0, "end", {}]]),
    ]
    chain = fmt.chain_seed("s-1")
    out = [fmt.MAGIC]
    for i, body in enumerate(bodies):
        chain = fmt.next_chain(chain, i, fmt.FRAME_DATA, body)
        out.append(fmt.encode_frame(fmt.FRAME_DATA, body, chain))
    message = fmt.seal_message("s-1", fmt.header_digest(bodies[0]), chain, 2)
    seal = msgpack.packb(
        {"alg": "ed25519", "key_id": real_id, "frames": 2, "sig": forger.sign(message)}
    )
    out.append(
        fmt.encode_frame(fmt.FRAME_SEAL, seal, fmt.next_chain(chain, 2, fmt.FRAME_SEAL, seal))
    )
    path = _write(tmp_path, b"".join(out))
    assert verify_recording(path, None).status == "unsigned"  # structurally perfect
    integrity = verify_recording(path, PUB)
    assert (integrity.status, integrity.first_bad_frame) == ("tampered", 2)
    assert "signature invalid" in integrity.message


def test_session_id_rewritten_in_the_header_is_detected(tmp_path: Path, closed_file: bytes) -> None:
    # Re-encode frame 0 with another session id (valid zstd, valid msgpack): the chain seed and
    # the signature both bind the session, so the forged header cannot verify.
    frames = _frames(closed_file)
    records = msgpack.unpackb(_zstd_decompress(frames[0][fmt.FRAME_HEADER.size : -fmt.CHAIN_SIZE]))
    records[0][2]["session_id"] = "s-evil"
    body = _zstd_records(records)
    frames[0] = fmt.encode_frame(fmt.FRAME_DATA, body, frames[0][-fmt.CHAIN_SIZE :])
    integrity = verify_recording(_write(tmp_path, b"".join([fmt.MAGIC, *frames])), PUB)
    assert (integrity.status, integrity.first_bad_frame) == ("tampered", 0)


def _zstd_records(records: list[object]) -> bytes:
    import zstandard

    raw = msgpack.packb(records, use_bin_type=True)
    compressed: bytes = zstandard.ZstdCompressor(write_content_size=True).compress(raw)
    return compressed


def _zstd_decompress(body: bytes) -> bytes:
    import zstandard

    out: bytes = zstandard.ZstdDecompressor().decompress(body)
    return out
