"""Recording writer, reader round trip, store layout and signing keys (docs/recording-format.md)."""

from __future__ import annotations

import errno
import hashlib
import itertools
import os
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.errors import GatewayError, RecordingError
from gateway.recording import format as fmt
from gateway.recording.keys import (
    PUBLIC_KEY_NAME,
    key_id,
    load_or_create_signing_key,
    load_public_key,
)
from gateway.recording.reader import Record, iter_records, read_recording, verify_recording
from gateway.recording.store import RecordingStore
from gateway.recording.writer import RecordingWriter

ROOT = Path(__file__).resolve().parents[2]
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


def fake_clock(start: float = 1000.0, step: float = 0.5) -> Callable[[], float]:
    ticks = itertools.count()
    return lambda: start + step * next(ticks)


def small_header(session_id: str = "s-1") -> dict[str, Any]:
    return {
        "session_id": session_id,
        "identity": {"sub": "agent", "groups": ["dev"]},
        "target": {"name": "db"},
        "protocol": "postgres",
        "peer": "127.0.0.1:5000",
        "started": 1_700_000_000.0,
    }


def make_recording(
    path: Path, *, session_id: str = "s-1", key: Ed25519PrivateKey = KEY, close: bool = True
) -> RecordingWriter:
    """A small closed file: header frame, three data frames, the end frame and the seal."""
    writer = RecordingWriter.create(path, small_header(session_id), key, clock=fake_clock())
    writer.record("query", {"sql": "select 1", "params": [1, "x"]})
    writer.flush()
    writer.record("rows", {"columns": ["a"], "rows": [[1], [2]], "capped": False})
    writer.record("decision", {"action": "allow"})
    writer.flush()
    writer.record("output", b"\x00\x01binary")
    writer.flush()
    if close:
        writer.close({"reason": "client closed"})
    return writer


def frame_spans(data: bytes) -> list[tuple[int, int]]:
    """[start, end) of every frame of a well-formed file, parsed independently of the reader."""
    spans = []
    offset = len(fmt.MAGIC)
    while offset < len(data):
        _type, length, _crc = fmt.FRAME_HEADER.unpack_from(data, offset)
        end = offset + fmt.FRAME_HEADER.size + length + fmt.CHAIN_SIZE
        spans.append((offset, end))
        offset = end
    assert offset == len(data)
    return spans


# -- round trip ------------------------------------------------------------------------------


def test_round_trip_keeps_header_records_and_end(tmp_path: Path) -> None:
    path = tmp_path / "r.wgrec"
    payloads: list[Any] = [
        {"sql": "select $1", "params": [None, True, False, -(2**63), 2**64 - 1, 1.5]},
        b"\x00\xff raw terminal bytes",
        "plain text",
        {"nested": {"deeper": [{"k": b"v"}, [], {}]}, b"bytes-key": 1},
        [1, [2, [3, [4]]]],
        0,
    ]
    writer = RecordingWriter.create(path, small_header(), KEY, clock=fake_clock())
    for i, payload in enumerate(payloads):
        writer.record(f"kind{i}", payload)
    writer.close({"reason": "done", "rows": 3})

    rec = read_recording(path, public_key=KEY.public_key())
    assert rec.integrity.status == "verified", rec.integrity.message
    assert rec.integrity.first_bad_frame is None
    assert rec.truncated is False
    assert rec.header["session_id"] == "s-1"
    assert rec.header["identity"] == {"sub": "agent", "groups": ["dev"]}
    assert rec.header["v"] == 1
    assert rec.header["started"] == 1_700_000_000.0
    assert rec.header["started_iso"] == "2023-11-14T22:13:20+00:00"
    assert rec.header["key_id"] == key_id(KEY.public_key())
    assert rec.header["gateway_version"]
    assert [r.payload for r in rec.records] == payloads
    assert [r.kind for r in rec.records] == [f"kind{i}" for i in range(len(payloads))]
    # The fake clock ticks 0.5 s per call; the first call is the writer's t0.
    assert [r.t for r in rec.records] == [0.5 * (i + 1) for i in range(len(payloads))]
    assert rec.end == {"reason": "done", "rows": 3}
    assert writer.bytes_written == path.stat().st_size


def test_iter_records_streams_the_same_records(tmp_path: Path) -> None:
    path = tmp_path / "r.wgrec"
    make_recording(path)
    whole = read_recording(path, public_key=KEY.public_key())
    with iter_records(path, public_key=KEY.public_key()) as stream:
        assert stream.header == whole.header  # read on open, before the first record
        streamed = list(stream)
    assert streamed == whole.records
    assert stream.end == whole.end
    assert stream.integrity == whole.integrity
    assert stream.truncated is False


def test_without_a_public_key_status_is_unsigned_not_verified(tmp_path: Path) -> None:
    path = tmp_path / "r.wgrec"
    make_recording(path)
    integrity = read_recording(path).integrity
    assert integrity.status == "unsigned"
    assert "not checked" in integrity.message


@st.composite
def payloads(draw: st.DrawFn) -> Any:
    scalars = (
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**63), max_value=2**64 - 1)
        | st.floats(allow_nan=False)
        | st.text(max_size=20)
        | st.binary(max_size=20)
    )
    return draw(
        st.recursive(
            scalars,
            lambda children: (
                st.lists(children, max_size=4)
                | st.dictionaries(st.text(max_size=5) | st.binary(max_size=5), children, max_size=4)
            ),
            max_leaves=20,
        )
    )


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(items=st.lists(st.tuples(st.text(min_size=1, max_size=8), payloads()), max_size=8))
def test_any_msgpack_payload_round_trips(tmp_path: Path, items: list[tuple[str, Any]]) -> None:
    items = [(kind, p) for kind, p in items if kind not in fmt.RESERVED_KINDS]
    path = tmp_path / f"h{os.urandom(6).hex()}.wgrec"
    writer = RecordingWriter.create(path, small_header(), KEY)
    for i, (kind, payload) in enumerate(items):
        writer.record(kind, payload)
        if i % 3 == 0:
            writer.flush()
    writer.close()
    rec = read_recording(path, public_key=KEY.public_key())
    assert rec.integrity.status == "verified"
    assert [(r.kind, r.payload) for r in rec.records] == items


# -- flushing --------------------------------------------------------------------------------


def test_each_flush_writes_one_frame_and_an_empty_flush_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "r.wgrec"
    writer = RecordingWriter.create(path, small_header(), KEY, clock=fake_clock())
    assert len(frame_spans(path.read_bytes())) == 1  # header frame written by create()
    writer.record("a", 1)
    writer.record("b", 2)
    before = writer.bytes_written
    assert len(frame_spans(path.read_bytes())) == 1  # buffered, not written
    writer.flush()
    assert writer.bytes_written > before
    assert len(frame_spans(path.read_bytes())) == 2
    size = writer.bytes_written
    writer.flush()
    assert writer.bytes_written == size
    writer.record("c", 3)
    writer.flush()
    writer.close()
    # header, {a, b}, {c}, {end}, seal
    assert len(frame_spans(path.read_bytes())) == 5
    assert [r.kind for r in read_recording(path).records] == ["a", "b", "c"]


def test_pending_buffer_flushes_itself_at_one_mebibyte(tmp_path: Path) -> None:
    path = tmp_path / "r.wgrec"
    writer = RecordingWriter.create(path, small_header(), KEY)
    chunk = os.urandom(300 * 1024)
    for _ in range(7):
        writer.record("output", chunk)
    data = path.read_bytes()
    # 7 x 300 KiB: flushed before the 4th and the 7th record would pass 1 MiB.
    assert len(frame_spans(data)) == 3
    writer.close()
    rec = read_recording(path, public_key=KEY.public_key())
    assert rec.integrity.status == "verified"
    assert [r.payload for r in rec.records] == [chunk] * 7


def test_a_record_over_the_record_cap_keeps_capped_values_and_says_so(tmp_path: Path) -> None:
    """A value larger than a record may be never ends the session: the recording keeps the
    value cut to a cap, and the record notes how many values were cut and at what size."""
    writer = RecordingWriter.create(tmp_path / "r.wgrec", small_header(), KEY)
    huge = "4" * (fmt.MAX_RECORD_BYTES + 1)
    writer.record("result", {"rows": [[huge, "small"]], "row_count": 1})
    writer.record("output", b"x" * (fmt.MAX_RECORD_BYTES + 1))
    writer.record("result", {"rows": [["y" * 1000] for _ in range(20_000)]})  # many small ones
    writer.record("output", b"still usable")
    writer.close({"body": b"x" * (fmt.MAX_RECORD_BYTES + 1)})
    rec = read_recording(writer.path, public_key=KEY.public_key())
    assert rec.integrity.status == "verified"
    first, second, third, fourth = (r.payload for r in rec.records)
    value = first["rows"][0][0]
    assert value.startswith("4" * 1000) and "more characters" in value
    assert len(value) < 300 << 10
    assert first["rows"][0][1] == "small" and first["capped"]["values"] == 1
    assert len(second) == 256 << 10
    assert third["capped"]["dropped"] == ["rows"] and third["capped"]["bytes"] > 20_000_000
    assert fourth == b"still usable"


# -- writer API ------------------------------------------------------------------------------


def test_create_is_exclusive_and_mode_0640(tmp_path: Path) -> None:
    path = tmp_path / "r.wgrec"
    old = os.umask(0o022)
    try:
        writer = RecordingWriter.create(path, small_header(), KEY)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert path.read_bytes().startswith(fmt.MAGIC)
    with pytest.raises(RecordingError, match="could not be created"):
        RecordingWriter.create(path, small_header(), KEY)
    writer.close()


def test_close_is_idempotent_and_record_after_close_raises(tmp_path: Path) -> None:
    writer = make_recording(tmp_path / "r.wgrec")
    assert writer.closed
    size = writer.bytes_written
    writer.close()
    assert writer.bytes_written == size
    with pytest.raises(RecordingError, match="closed"):
        writer.record("late", {})
    writer.flush()  # a timer firing after close is harmless
    assert writer.bytes_written == size


def test_properties(tmp_path: Path) -> None:
    path = tmp_path / "r.wgrec"
    writer = RecordingWriter.create(path, small_header("sess-9"), KEY)
    assert (writer.path, writer.session_id, writer.closed, writer.broken) == (
        path,
        "sess-9",
        False,
        False,
    )
    writer.close()


def test_header_and_end_kinds_are_reserved(tmp_path: Path) -> None:
    writer = RecordingWriter.create(tmp_path / "r.wgrec", small_header(), KEY)
    for kind in ("header", "end", ""):
        with pytest.raises(ValueError, match="kind"):
            writer.record(kind, {})
    writer.close()


def test_unencodable_payloads_raise_type_error_and_leave_the_writer_usable(tmp_path: Path) -> None:
    writer = RecordingWriter.create(tmp_path / "r.wgrec", small_header(), KEY)
    with pytest.raises(TypeError):
        writer.record("x", {"when": object()})
    with pytest.raises(TypeError, match="map key"):
        writer.record("x", {1: "int keys are refused by the reader"})
    deep: list[Any] = []
    for _ in range(100_000):  # built iteratively; the check must not recurse either
        deep = [deep]
    with pytest.raises(TypeError, match="nested deeper"):
        writer.record("x", deep)
    with pytest.raises(TypeError):
        writer.close({"end": object()})
    writer.record("x", {"ok": True})
    writer.close()
    rec = read_recording(writer.path, public_key=KEY.public_key())
    assert rec.integrity.status == "verified"
    assert rec.records[0].payload == {"ok": True}


@pytest.mark.parametrize(
    ("header", "match"),
    [
        ({}, "session_id"),
        ({"session_id": ""}, "session_id"),
        ({"session_id": "s", "v": 2}, "v=2"),
        ({"session_id": "s", "key_id": "0000000000000000"}, "key_id"),
        ({"session_id": "s", "started": float("nan")}, "started"),
        ({"session_id": "s", "started": "yesterday"}, "started"),
        ({"session_id": "s", 5: "x"}, "map key"),
        ({"session_id": "s", "identity": object()}, "serializ"),
        ({"session_id": "s", "blob": b"x" * fmt.MAX_RECORD_BYTES}, "record cap"),
    ],
)
def test_header_is_checked_before_the_file_is_created(
    tmp_path: Path, header: dict[Any, Any], match: str
) -> None:
    path = tmp_path / "r.wgrec"
    with pytest.raises((ValueError, TypeError), match=match):
        RecordingWriter.create(path, header, KEY)
    assert not path.exists()


# -- write failures: fail closed -------------------------------------------------------------


def _fail_writes_to(monkeypatch: pytest.MonkeyPatch, writer: RecordingWriter, err: int) -> None:
    real_write = os.write
    target = writer._fd

    def write(fd: int, data: Any) -> int:
        if fd == target:
            raise OSError(err, os.strerror(err))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)


def test_enospc_raises_recording_error_and_breaks_the_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "r.wgrec"
    writer = RecordingWriter.create(path, small_header(), KEY)
    writer.record("query", {"sql": "select 1"})
    writer.flush()
    _fail_writes_to(monkeypatch, writer, errno.ENOSPC)
    writer.record("query", {"sql": "select 2"})
    with pytest.raises(RecordingError, match=r"could not be written: .*No space left"):
        writer.flush()
    assert writer.broken
    with pytest.raises(RecordingError, match="broken"):
        writer.record("query", {"sql": "select 3"})
    with pytest.raises(RecordingError, match="broken"):
        writer.flush()
    with pytest.raises(RecordingError, match="not sealed"):
        writer.close()
    writer.close()  # once released, closing again is a no-op
    monkeypatch.undo()
    rec = read_recording(path, public_key=KEY.public_key())
    assert rec.integrity.status == "truncated"
    assert [r.payload for r in rec.records] == [{"sql": "select 1"}]


def test_eio_while_closing_raises_and_leaves_a_truncated_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "r.wgrec"
    writer = RecordingWriter.create(path, small_header(), KEY)
    writer.record("query", {"sql": "select 1"})
    writer.flush()
    _fail_writes_to(monkeypatch, writer, errno.EIO)
    with pytest.raises(RecordingError, match="could not be written"):
        writer.close({"reason": "done"})
    assert writer.closed and writer.broken
    monkeypatch.undo()
    assert read_recording(path).integrity.status == "truncated"


def test_fsync_failure_at_close_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writer = RecordingWriter.create(tmp_path / "r.wgrec", small_header(), KEY)

    def fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(RecordingError, match="Input/output error"):
        writer.close()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_real_full_device_fails_closed(tmp_path: Path) -> None:
    writer = RecordingWriter.create(tmp_path / "r.wgrec", small_header(), KEY)
    full = os.open("/dev/full", os.O_WRONLY)
    try:
        assert writer._fd is not None
        os.dup2(full, writer._fd)  # the kernel now answers every write with ENOSPC
    finally:
        os.close(full)
    writer.record("output", b"x")
    with pytest.raises(RecordingError, match="No space left"):
        writer.flush()
    assert writer.broken


def test_short_writes_are_completed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "r.wgrec"
    real_write = os.write

    def dribble(fd: int, data: Any) -> int:
        return real_write(fd, bytes(data[:7]))

    monkeypatch.setattr(os, "write", dribble)
    make_recording(path)
    monkeypatch.undo()
    assert read_recording(path, public_key=KEY.public_key()).integrity.status == "verified"


def test_kill_9_loses_only_unflushed_records(tmp_path: Path) -> None:
    path = tmp_path / "crash.wgrec"
    script = f"""
import sys, time
from pathlib import Path
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from gateway.recording.writer import RecordingWriter
w = RecordingWriter.create(Path({str(path)!r}), {{"session_id": "crash"}},
                           Ed25519PrivateKey.generate())
for i in range(3):
    w.record("query", {{"n": i}})
    w.flush()
w.record("query", {{"n": "never flushed"}})
print("ready", flush=True)
time.sleep(60)
"""
    proc = subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
    rec = read_recording(path)
    assert rec.integrity.status == "truncated"
    assert rec.integrity.first_bad_frame == 4  # frames 0-3 are whole, frame 4 never came
    assert rec.truncated
    assert rec.header["session_id"] == "crash"
    assert [r.payload for r in rec.records] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert rec.end is None


def test_unclosed_writer_reads_as_truncated_up_to_the_last_flush(tmp_path: Path) -> None:
    path = tmp_path / "r.wgrec"
    writer = make_recording(path, close=False)
    writer.record("pending", {"lost": True})
    rec = read_recording(path, public_key=KEY.public_key())
    assert rec.integrity.status == "truncated"
    assert [r.kind for r in rec.records] == ["query", "rows", "decision", "output"]
    assert verify_recording(path, KEY.public_key()).status == "truncated"
    writer.close()


# -- store -----------------------------------------------------------------------------------


def test_store_layout_is_day_directory_and_sortable_name(tmp_path: Path) -> None:
    store = RecordingStore(tmp_path / "rec")
    path = store.new_path("abc-123", 1_700_000_000.25)
    assert path == tmp_path / "rec" / "2023-11-14" / "20231114T221320.250000Z_abc-123.wgrec"
    assert path.parent.is_dir()
    assert not path.exists()


def test_store_lists_newest_first_and_ignores_other_files(tmp_path: Path) -> None:
    store = RecordingStore(tmp_path)
    assert store.list() == []
    times = [1_700_000_000.0, 1_700_090_000.0, 1_700_000_500.0, 1_600_000_000.0]
    paths = []
    for i, started in enumerate(times):
        path = store.new_path(f"s{i}", started)
        path.write_bytes(b"")
        paths.append(path)
    (tmp_path / "2023-11-14" / "notes.txt").write_text("x")
    (tmp_path / "2023-11-14" / ".partial.wgrec").write_bytes(b"")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "x.wgrec").write_bytes(b"")
    assert store.list() == [paths[1], paths[2], paths[0], paths[3]]


@pytest.mark.parametrize("bad", ["../escape", "a/b", ".hidden", "", "x" * 129, "nul\x00"])
def test_store_refuses_session_ids_that_are_not_plain_names(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError, match="session id"):
        RecordingStore(tmp_path).new_path(bad, 1_700_000_000.0)


# -- keys ------------------------------------------------------------------------------------


def test_signing_key_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    key = load_or_create_signing_key(tmp_path)
    path = tmp_path / "keys" / "recording-ed25519.pem"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = load_or_create_signing_key(tmp_path)
    raw = Encoding.Raw, PublicFormat.Raw
    assert again.public_key().public_bytes(*raw) == key.public_key().public_bytes(*raw)
    assert load_public_key(tmp_path).public_bytes(*raw) == key.public_key().public_bytes(*raw)
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_key_id_is_sha256_of_raw_public_key_16_hex(tmp_path: Path) -> None:
    raw = KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert key_id(KEY.public_key()) == hashlib.sha256(raw).hexdigest()[:16]


def test_concurrent_creation_agrees_on_one_key(tmp_path: Path) -> None:
    found: list[bytes] = []
    barrier = threading.Barrier(8)

    def create() -> None:
        barrier.wait()
        pub = load_or_create_signing_key(tmp_path).public_key()
        found.append(pub.public_bytes(Encoding.Raw, PublicFormat.Raw))

    threads = [threading.Thread(target=create) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(found) == 8 and len(set(found)) == 1


def test_public_key_alone_is_enough_to_verify(tmp_path: Path) -> None:
    key = load_or_create_signing_key(tmp_path)
    auditor = tmp_path / "auditor"
    (auditor / "keys").mkdir(parents=True)
    pub = (tmp_path / "keys" / PUBLIC_KEY_NAME).read_bytes()
    (auditor / "keys" / PUBLIC_KEY_NAME).write_bytes(pub)
    make_recording(tmp_path / "r.wgrec", key=key)
    assert verify_recording(tmp_path / "r.wgrec", load_public_key(auditor)).status == "verified"


def test_readable_by_others_key_is_refused(tmp_path: Path) -> None:
    load_or_create_signing_key(tmp_path)
    path = tmp_path / "keys" / "recording-ed25519.pem"
    path.chmod(0o644)
    with pytest.raises(GatewayError, match="chmod 600"):
        load_or_create_signing_key(tmp_path)


def test_damaged_key_is_an_error_not_silently_replaced(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "recording-ed25519.pem"
    path.parent.mkdir()
    path.write_bytes(b"-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n")
    path.chmod(0o600)
    with pytest.raises(GatewayError, match="restore it from backup"):
        load_or_create_signing_key(tmp_path)
    assert b"garbage" in path.read_bytes()


def test_missing_key_for_verification_names_the_files(tmp_path: Path) -> None:
    with pytest.raises(GatewayError, match="no recording key"):
        load_public_key(tmp_path)


# -- packaging -------------------------------------------------------------------------------


def test_importing_the_reader_does_not_load_the_writer() -> None:
    code = (
        "import sys, gateway.recording.reader\n"
        "assert 'gateway.recording.writer' not in sys.modules, sorted(sys.modules)\n"
        "from gateway.recording import RecordingWriter, read_recording, RecordingStore\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_record_is_a_named_tuple() -> None:
    rec = Record(1.0, "k", {"a": 1})
    assert (rec.t, rec.kind, rec.payload) == (1.0, "k", {"a": 1})
