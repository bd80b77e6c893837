"""Hostile recording files (HOSTILE.md I.56): the reader bounds everything and never trusts a file.

Each crafted file carries a *correct* hash chain, so the hostile content is what the reader
must survive, not a checksum that happens to stop it first.
"""

from __future__ import annotations

import struct
import tracemalloc
from pathlib import Path
from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.recording import format as fmt
from gateway.recording.reader import (
    ReaderLimits,
    RecordingFormatError,
    iter_records,
    read_recording,
    verify_recording,
)
from tests.unit.test_recording import KEY, make_recording

SID = "hostile"
HEADER = {"v": 1, "session_id": SID, "key_id": fmt.key_id_of(KEY.public_key()), "started": 0.0}
T_KIND = msgpack.packb(1.0) + msgpack.packb("evil")  # the [t, kind, ...] prefix of a record


def zstd(raw: bytes) -> bytes:
    out: bytes = zstandard.ZstdCompressor(write_content_size=True).compress(raw)
    return out


def records_body(records: list[Any]) -> bytes:
    return zstd(msgpack.packb(records, use_bin_type=True))


def one_record_body(payload_bytes: bytes) -> bytes:
    """A frame holding one record whose payload is the given raw msgpack bytes."""
    return zstd(b"\x91\x93" + T_KIND + payload_bytes)


def forge(*bodies: bytes, header: bytes | None = None, frame_type: int = fmt.FRAME_DATA) -> bytes:
    """MAGIC + a header frame + the given frame bodies, all with a correct hash chain."""
    all_bodies = [header if header is not None else records_body([[0.0, "header", HEADER]])]
    all_bodies += bodies
    chain = fmt.chain_seed(SID)
    out = [fmt.MAGIC]
    for i, body in enumerate(all_bodies):
        ftype = fmt.FRAME_DATA if i == 0 else frame_type
        chain = fmt.next_chain(chain, i, ftype, body)
        out.append(fmt.encode_frame(ftype, body, chain))
    return b"".join(out)


def read_bytes(tmp_path: Path, data: bytes, **kwargs: Any) -> Any:
    path = tmp_path / "hostile.wgrec"
    path.write_bytes(data)
    return read_recording(path, **kwargs)


def assert_rejected_frame(tmp_path: Path, data: bytes, frame: int, reason: str) -> None:
    rec = read_bytes(tmp_path, data)
    assert rec.integrity.status == "tampered", rec.integrity
    assert rec.integrity.first_bad_frame == frame
    assert reason in rec.integrity.message, rec.integrity.message


def test_forge_helper_builds_a_file_the_reader_accepts(tmp_path: Path) -> None:
    data = forge(records_body([[1.0, "query", {"sql": "select 1"}], [2.0, "end", {}]]))
    rec = read_bytes(tmp_path, data)
    assert rec.integrity.status == "truncated"  # no seal, otherwise fine
    assert rec.records[0].payload == {"sql": "select 1"}
    assert rec.end == {}


# -- zstd ------------------------------------------------------------------------------------


def test_zstd_window_log_31_is_refused_before_decompressing(tmp_path: Path) -> None:
    # Frame header: magic, FHD 0x40 (2-byte content size, window descriptor present),
    # window descriptor 0xA8 (windowLog 10 + 21 = 31), content size 0 + 256, one empty raw block.
    body = b"\x28\xb5\x2f\xfd" + bytes([0x40, 0xA8]) + struct.pack("<H", 0) + b"\x01\x00\x00"
    assert zstandard.get_frame_parameters(body).window_size == 1 << 31
    assert_rejected_frame(tmp_path, forge(body), 1, "zstd window of 2147483648 bytes")


def test_zstd_declaring_a_terabyte_is_refused_before_allocating(tmp_path: Path) -> None:
    # FHD 0xE0: single segment, 8-byte content size = 1 TiB.
    body = b"\x28\xb5\x2f\xfd\xe0" + struct.pack("<Q", 1 << 40) + b"\x01\x00\x00"
    tracemalloc.start()
    try:
        assert_rejected_frame(tmp_path, forge(body), 1, "declares 1099511627776 bytes")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20


def test_zstd_bomb_of_real_zeros_is_refused_by_its_declared_size(tmp_path: Path) -> None:
    body = zstd(bytes(100 << 20))  # 100 MiB of zeros in a few KiB
    assert len(body) < 64 << 10
    assert_rejected_frame(tmp_path, forge(body), 1, "over 67108864")


def test_zstd_frame_without_content_size_is_refused(tmp_path: Path) -> None:
    body = zstandard.ZstdCompressor(write_content_size=False).compress(msgpack.packb([]))
    assert_rejected_frame(tmp_path, forge(body), 1, "does not declare its content size")


def test_zstd_content_size_that_lies_is_refused(tmp_path: Path) -> None:
    raw = msgpack.packb([[1.0, "x", "y" * 5000]])
    body = bytearray(zstandard.ZstdCompressor(write_content_size=True).compress(raw))
    params = zstandard.get_frame_parameters(bytes(body))
    assert params.content_size == len(raw)
    assert body[4] & 0xC0 == 0x40  # 2-byte content size field, value - 256
    body[5:7] = struct.pack("<H", 0)  # now claims 256 bytes
    assert_rejected_frame(tmp_path, forge(bytes(body)), 1, "zstd")


def test_two_zstd_frames_in_one_body_are_refused(tmp_path: Path) -> None:
    body = records_body([[1.0, "a", 1]]) + records_body([[2.0, "b", 2]])
    assert_rejected_frame(tmp_path, forge(body), 1, "exactly one complete zstd frame")


def test_frame_length_of_4_gib_is_refused_before_reading(tmp_path: Path) -> None:
    data = forge() + fmt.encode_frame_header(fmt.FRAME_DATA, 0xFFFFFFFF) + b"\x00" * 64
    assert_rejected_frame(tmp_path, data, 1, "over the limit of 8388608")


def test_oversized_seal_is_refused(tmp_path: Path) -> None:
    data = forge() + fmt.encode_frame_header(fmt.FRAME_SEAL, 4096) + b"\x00" * 64
    assert_rejected_frame(tmp_path, data, 1, "over the limit of 512")


def test_unknown_frame_type_is_refused(tmp_path: Path) -> None:
    data = forge() + fmt.encode_frame(0x58, b"", b"\x00" * 32)
    assert_rejected_frame(tmp_path, data, 1, "unknown frame type 0x58")


# -- msgpack ---------------------------------------------------------------------------------


def test_msgpack_array32_declaring_4_billion_items_is_refused(tmp_path: Path) -> None:
    tracemalloc.start()
    try:
        assert_rejected_frame(
            tmp_path, forge(one_record_body(b"\xdd\xff\xff\xff\xff")), 1, "exceeds max_array_len"
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20


def test_msgpack_frame_array32_of_records_is_refused(tmp_path: Path) -> None:
    assert_rejected_frame(tmp_path, forge(zstd(b"\xdd\xff\xff\xff\xff")), 1, "max_array_len")


@pytest.mark.parametrize("code", [b"\xdb", b"\xc6"])  # str32, bin32
def test_msgpack_str_and_bin_declaring_4_gib_are_refused(tmp_path: Path, code: bytes) -> None:
    tracemalloc.start()
    try:
        assert_rejected_frame(
            tmp_path, forge(one_record_body(code + b"\xff\xff\xff\xff")), 1, "msgpack"
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20


@pytest.mark.parametrize(
    ("payload", "limits", "what"),
    [
        (msgpack.packb("x" * 30), ReaderLimits(max_str_len=16), "max_str_len"),
        (msgpack.packb(b"x" * 20), ReaderLimits(max_bin_len=10), "max_bin_len"),
        (msgpack.packb([0] * 20), ReaderLimits(max_array_len=10), "max_array_len"),
        (
            msgpack.packb({str(i): 0 for i in range(20)}),
            ReaderLimits(max_map_len=10),
            "max_map_len",
        ),
    ],
)
def test_msgpack_limits_are_reader_limits(
    tmp_path: Path, payload: bytes, limits: ReaderLimits, what: str
) -> None:
    rec = read_bytes(tmp_path, forge(one_record_body(payload)), limits=limits)
    assert (rec.integrity.status, rec.integrity.first_bad_frame) == ("tampered", 1)
    assert what in rec.integrity.message
    assert read_bytes(tmp_path, forge(one_record_body(payload))).records[0].payload


def test_msgpack_map32_declaring_4_billion_pairs_is_refused(tmp_path: Path) -> None:
    assert_rejected_frame(
        tmp_path, forge(one_record_body(b"\xdf\xff\xff\xff\xff")), 1, "max_map_len"
    )


def test_nesting_depth_100000_is_refused_without_recursion_error(tmp_path: Path) -> None:
    payload = b"\x91" * 100_000 + b"\xc0"
    assert_rejected_frame(tmp_path, forge(one_record_body(payload)), 1, "msgpack")


def test_nesting_depth_100000_of_maps_is_refused_without_recursion_error(tmp_path: Path) -> None:
    payload = b"\x81\xa1k" * 100_000 + b"\xc0"
    assert_rejected_frame(tmp_path, forge(one_record_body(payload)), 1, "msgpack")


def test_nesting_just_past_the_depth_cap_is_refused(tmp_path: Path) -> None:
    # Deep enough to pass msgpack's own 1024-level stack, caught by the reader's cap.
    payload = b"\x91" * (fmt.MAX_PAYLOAD_DEPTH + 1) + b"\xc0"
    assert_rejected_frame(tmp_path, forge(one_record_body(payload)), 1, "nested deeper than 32")
    ok = b"\x91" * fmt.MAX_PAYLOAD_DEPTH + b"\xc0"
    assert read_bytes(tmp_path, forge(one_record_body(ok))).integrity.status == "truncated"


def test_depth_cap_is_a_reader_limit(tmp_path: Path) -> None:
    payload = b"\x91" * 5 + b"\xc0"
    rec = read_bytes(tmp_path, forge(one_record_body(payload)), limits=ReaderLimits(max_depth=4))
    assert "nested deeper than 4" in rec.integrity.message


def test_int_map_keys_in_the_header_are_refused(tmp_path: Path) -> None:
    header = records_body([[0.0, "header", {**HEADER, 7: "x"}]])
    rec = read_bytes(tmp_path, forge(header=header))
    assert (rec.integrity.status, rec.integrity.first_bad_frame) == ("tampered", 0)
    assert "int is not allowed for map key" in rec.integrity.message
    assert rec.header == {}


def test_bytes_map_keys_in_the_header_are_refused(tmp_path: Path) -> None:
    identity = {b"sub": "root"}
    header = records_body([[0.0, "header", {**HEADER, "identity": identity}]])
    assert_rejected_frame(tmp_path, forge(header=header), 0, "map key b'sub' is bytes, must be str")


def test_array_map_keys_in_records_are_refused(tmp_path: Path) -> None:
    payload = b"\x81\x91\x01\x02"  # {[1]: 2}
    assert_rejected_frame(tmp_path, forge(one_record_body(payload)), 1, "msgpack")


def test_msgpack_ext_types_are_refused(tmp_path: Path) -> None:
    payload = b"\xd6\xff\x00\x00\x00\x01"  # a msgpack Timestamp
    assert_rejected_frame(tmp_path, forge(one_record_body(payload)), 1, "max_ext_len")


def test_invalid_utf8_string_is_refused(tmp_path: Path) -> None:
    assert_rejected_frame(tmp_path, forge(one_record_body(b"\xa2\xff\xfe")), 1, "msgpack")


@pytest.mark.parametrize(
    ("records", "reason"),
    [
        ({"not": "a list"}, "array of records"),
        ([[1.0, "x"]], "not [t, kind, payload]"),
        ([[float("nan"), "x", 1]], "non-numeric time"),
        ([[True, "x", 1]], "non-numeric time"),
        ([[1.0, 5, 1]], "no str kind"),
        ([[1.0, "header", {}]], "header outside frame 0"),
        ([[1.0, "end", "bye"]], "end record payload is not a map"),
        ([[1.0, "end", {}], [2.0, "late", 1]], "follows the end record"),
    ],
)
def test_malformed_records_are_refused(tmp_path: Path, records: Any, reason: str) -> None:
    assert_rejected_frame(tmp_path, forge(records_body(records)), 1, reason)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ([], "holds 0 records"),
        ([[0.0, "query", {}]], "not a header map"),
        ([[0.0, "header", {**HEADER, "v": 9}]], "v=9"),
        ([[0.0, "header", {**HEADER, "session_id": 3}]], "session_id"),
        ([[0.0, "header", {k: v for k, v in HEADER.items() if k != "key_id"}]], "key_id"),
    ],
)
def test_malformed_headers_are_refused(tmp_path: Path, header: Any, reason: str) -> None:
    assert_rejected_frame(tmp_path, forge(header=records_body(header)), 0, reason)


def test_data_frame_after_the_end_record_is_refused(tmp_path: Path) -> None:
    data = forge(records_body([[1.0, "end", {}]]), records_body([[2.0, "late", 1]]))
    assert_rejected_frame(tmp_path, data, 2, "after the end record")


def test_seal_as_the_first_frame_is_refused(tmp_path: Path) -> None:
    data = fmt.MAGIC + fmt.encode_frame(fmt.FRAME_SEAL, b"\x80", b"\x00" * 32)
    assert_rejected_frame(tmp_path, data, 0, "seal where the header frame belongs")


@pytest.mark.parametrize(
    ("seal", "reason"),
    [
        (b"\xc1", "seal is not readable"),
        (msgpack.packb([1, 2]), "seal is not readable"),
        (msgpack.packb({"alg": "ed25519"}), "map of alg"),
        (msgpack.packb({"alg": "rsa", "key_id": "k", "frames": 2, "sig": b"s"}), "algorithm"),
        (msgpack.packb({"alg": "ed25519", "key_id": "k", "frames": 7, "sig": b"s"}), "counts 7"),
        (msgpack.packb({"alg": "ed25519", "key_id": "k", "frames": True, "sig": b"s"}), "counts"),
    ],
)
def test_malformed_seals_are_refused(tmp_path: Path, seal: bytes, reason: str) -> None:
    end = records_body([[1.0, "end", {}]])
    data = forge(end)
    chain = _chain_of(data)
    data += fmt.encode_frame(fmt.FRAME_SEAL, seal, fmt.next_chain(chain, 2, fmt.FRAME_SEAL, seal))
    assert_rejected_frame(tmp_path, data, 2, reason)


def test_seal_without_an_end_record_is_refused(tmp_path: Path) -> None:
    data = forge()
    seal = msgpack.packb({"alg": "ed25519", "key_id": "k", "frames": 1, "sig": b"s" * 64})
    data += fmt.encode_frame(
        fmt.FRAME_SEAL, seal, fmt.next_chain(_chain_of(data), 1, fmt.FRAME_SEAL, seal)
    )
    assert_rejected_frame(tmp_path, data, 1, "seal without an end record")


def _chain_of(data: bytes) -> bytes:
    return data[-fmt.CHAIN_SIZE :]


# -- file-level limits and foreign files -----------------------------------------------------


def test_too_many_frames_raise_a_format_error(tmp_path: Path) -> None:
    data = forge(*[records_body([[1.0, "x", i]]) for i in range(5)])
    with pytest.raises(RecordingFormatError, match="max_frames"):
        read_bytes(tmp_path, data, limits=ReaderLimits(max_frames=3))


def test_total_size_limit_applies_to_read_but_not_to_streaming(tmp_path: Path) -> None:
    data = forge(*[records_body([[1.0, "x", "y" * 1000]]) for _ in range(5)])
    limits = ReaderLimits(max_total_bytes=3000)
    with pytest.raises(RecordingFormatError, match="iter_records"):
        read_bytes(tmp_path, data, limits=limits)
    with iter_records(tmp_path / "hostile.wgrec", limits=limits) as stream:
        assert len(list(stream)) == 5
    assert stream.integrity is not None and stream.integrity.status == "truncated"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"PK\x03\x04 a zip file", "not a wardgate recording"),
        (b"WGREX\x01", "not a wardgate recording"),
        (b"WGREC\x02", "format version 2"),
        (b"\x00", "not a wardgate recording"),
    ],
)
def test_other_files_raise_a_clear_format_error(tmp_path: Path, data: bytes, reason: str) -> None:
    with pytest.raises(RecordingFormatError, match=reason):
        read_bytes(tmp_path, data)


def test_unreadable_path_raises_a_format_error(tmp_path: Path) -> None:
    with pytest.raises(RecordingFormatError, match="could not be read"):
        read_recording(tmp_path / "missing.wgrec")
    with pytest.raises(RecordingFormatError, match="could not be read"):
        verify_recording(tmp_path, None)  # a directory


# -- fuzzing: only RecordingFormatError may escape -------------------------------------------


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=512))
def test_random_bytes_raise_only_format_errors(tmp_path: Path, data: bytes) -> None:
    try:
        rec = read_bytes(tmp_path, data)
    except RecordingFormatError:
        return
    assert rec.integrity.status in {"truncated", "tampered"}


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=512))
def test_random_bytes_after_the_magic_never_raise(tmp_path: Path, data: bytes) -> None:
    rec = read_bytes(tmp_path, fmt.MAGIC + data)
    assert rec.integrity.status in {"truncated", "tampered"}


@pytest.fixture(scope="module")
def sealed(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("fuzz") / "sealed.wgrec"
    make_recording(path)
    return path.read_bytes()


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    edits=st.lists(
        st.tuples(
            st.integers(min_value=0),
            st.sampled_from(["set", "insert", "delete"]),
            st.binary(min_size=1, max_size=8),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_mutated_files_are_never_verified(
    tmp_path: Path, sealed: bytes, edits: list[tuple[int, str, bytes]]
) -> None:
    data = bytearray(sealed)
    for position, op, chunk in edits:
        at = position % (len(data) + 1)
        if op == "set":
            data[at : at + len(chunk)] = chunk
        elif op == "insert":
            data[at:at] = chunk
        else:
            del data[at : at + len(chunk)]
    try:
        rec = read_bytes(tmp_path, bytes(data), public_key=KEY.public_key())
    except RecordingFormatError:
        return
    if bytes(data) != sealed:
        assert rec.integrity.status != "verified"


def test_seal_naming_another_key_than_the_header_is_refused(tmp_path: Path) -> None:
    data = forge(records_body([[1.0, "end", {}]]))
    seal = msgpack.packb({"alg": "ed25519", "key_id": "0" * 16, "frames": 2, "sig": b"s" * 64})
    data += fmt.encode_frame(
        fmt.FRAME_SEAL, seal, fmt.next_chain(_chain_of(data), 2, fmt.FRAME_SEAL, seal)
    )
    path = tmp_path / "seal.wgrec"
    path.write_bytes(data)
    for public_key in (None, KEY.public_key()):
        integrity = verify_recording(path, public_key)
        assert (integrity.status, integrity.first_bad_frame) == ("tampered", 2)
        assert "seal names key '0000000000000000'" in integrity.message
