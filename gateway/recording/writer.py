"""RecordingWriter: append a session's records to a ``.wgrec`` file as it runs.

Records are buffered and written as one zstd frame per ``flush()``; the caller flushes after
every command decision and on a one-second timer, so a crash loses at most the records since
the last flush. Every write error is fatal for the session (fail closed): the writer raises
``RecordingError`` and refuses all further work.

The writer is synchronous and owned by one session task; it does plain ``os.write`` calls on
a local file, which is what the design budgets for.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import msgpack  # type: ignore[import-untyped]
import zstandard
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import gateway
from gateway.errors import RecordingError
from gateway.recording import format as fmt


class RecordingWriter:
    """Writes one session's recording. Create it with ``RecordingWriter.create``."""

    def __init__(
        self,
        *,
        path: Path,
        fd: int,
        session_id: str,
        signing_key: Ed25519PrivateKey,
        clock: Callable[[], float],
    ) -> None:
        self._path = path
        self._fd: int | None = fd
        self._session_id = session_id
        self._signing_key = signing_key
        self._key_id = fmt.key_id_of(signing_key.public_key())
        self._clock = clock
        self._t0 = clock()
        self._packer = msgpack.Packer(use_bin_type=True, datetime=False)
        self._compressor = zstandard.ZstdCompressor(
            level=fmt.ZSTD_LEVEL, write_checksum=True, write_content_size=True
        )
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._chain = fmt.chain_seed(session_id)
        self._frames = 0
        self._header_digest = b""
        self._bytes_written = 0
        self._closed = False
        self._broken: str | None = None

    @classmethod
    def create(
        cls,
        path: Path,
        header: dict[str, Any],
        signing_key: Ed25519PrivateKey,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> RecordingWriter:
        """Create ``path`` (O_EXCL, mode 0640) and write the magic and the header frame.

        ``header`` must hold ``session_id``; ``v``, ``started``, ``started_iso``,
        ``gateway_version`` and ``key_id`` are filled in when absent.
        """
        full = _complete_header(header, fmt.key_id_of(signing_key.public_key()))
        # Encoded before the file exists, so a bad header leaves nothing behind.
        header_record: bytes = msgpack.packb(
            [0.0, fmt.KIND_HEADER, full], use_bin_type=True, datetime=False
        )
        if len(header_record) > fmt.MAX_RECORD_BYTES:
            raise ValueError(f"recording header is {len(header_record)} bytes, over the record cap")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640)
        except OSError as exc:
            raise RecordingError(f"recording {path} could not be created: {exc}") from exc
        writer = cls(
            path=path, fd=fd, session_id=full["session_id"], signing_key=signing_key, clock=clock
        )
        try:
            body = writer._compress([header_record])
            writer._header_digest = fmt.header_digest(body)
            writer._write(fmt.MAGIC + writer._frame(fmt.FRAME_DATA, body))
        except BaseException:
            writer._release()
            raise
        return writer

    @property
    def path(self) -> Path:
        return self._path

    @property
    def session_id(self) -> str:
        return self._session_id

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def broken(self) -> bool:
        return self._broken is not None

    @property
    def bytes_written(self) -> int:
        return self._bytes_written

    def record(self, kind: str, payload: Any) -> None:
        """Buffer one record. Flushes by itself when the buffer reaches 1 MiB.

        A payload msgpack cannot encode raises TypeError (a programming error); so does a map
        key that is not str/bytes, which the reader would refuse, or nesting deeper than 32.
        A record that would pack to more than 4 MiB is recorded with its long strings and byte
        strings cut (see :func:`capped`): a large value never ends a session.
        """
        self._check_usable()
        if not isinstance(kind, str) or not kind or kind in fmt.RESERVED_KINDS:
            raise ValueError(f"record kind must be a non-empty str other than header/end: {kind!r}")
        packed = self._pack(self._now(), kind, payload)
        if self._pending and self._pending_bytes + len(packed) > fmt.FLUSH_THRESHOLD_BYTES:
            self.flush()
        self._pending.append(packed)
        self._pending_bytes += len(packed)
        if self._pending_bytes >= fmt.FLUSH_THRESHOLD_BYTES:
            self.flush()

    def flush(self) -> None:
        """Write the pending records as one frame (no fsync).

        A no-op when nothing is pending or the writer is closed: the one-second timer may fire
        after the session closed its recording, which is harmless.
        """
        if self._closed and self._broken is None:
            return
        self._check_usable()
        if not self._pending:
            return
        body = self._compress(self._pending)
        self._pending = []
        self._pending_bytes = 0
        self._write(self._frame(fmt.FRAME_DATA, body))

    def sync(self) -> None:
        """fsync the file: what has been flushed survives a power loss. A no-op once closed."""
        if self._closed and self._broken is None:
            return
        self._check_usable()
        assert self._fd is not None  # _check_usable guarantees it
        try:
            os.fsync(self._fd)
        except OSError as exc:
            self._fail(exc)

    def close(self, end_payload: dict[str, Any] | None = None) -> None:
        """Write the ``end`` record and the seal, fsync and close. Idempotent once closed.

        On a broken writer it releases the file and raises RecordingError: the file has no
        seal and reads as truncated.
        """
        if self._closed:
            return
        if self._broken is not None:
            self._release()
            self._closed = True
            raise RecordingError(f"recording {self._path} was not sealed: {self._broken}")
        # Packed first: a payload msgpack refuses (TypeError) leaves the writer open and usable.
        end_record = self._pack(
            self._now(), fmt.KIND_END, {} if end_payload is None else end_payload
        )
        try:
            self._pending.append(end_record)
            body = self._compress(self._pending)
            self._pending = []
            self._pending_bytes = 0
            # One write for the last data frame and the seal keeps the window in which a crash
            # leaves an end record without a seal as small as possible.
            data = self._frame(fmt.FRAME_DATA, body)
            self._write(data + self._seal_frame())
            self.sync()
        finally:
            self._release()
            self._closed = True
        _fsync_dir(self._path.parent)

    # -- internals ---------------------------------------------------------------------------

    def _seal_frame(self) -> bytes:
        message = fmt.seal_message(self._session_id, self._header_digest, self._chain, self._frames)
        body = self._packer.pack(
            {
                "alg": fmt.SEAL_ALG,
                "key_id": self._key_id,
                "frames": self._frames,
                "sig": self._signing_key.sign(message),
            }
        )
        return self._frame(fmt.FRAME_SEAL, body)

    def _now(self) -> float:
        return float(self._clock() - self._t0)

    def _pack(self, t: float, kind: str, payload: Any) -> bytes:
        problem = fmt.payload_problem(payload, fmt.MAX_PAYLOAD_DEPTH, str_keys_only=False)
        if problem is not None:
            raise TypeError(f"{kind} record payload cannot be recorded: {problem}")
        packed: bytes = self._packer.pack([t, kind, payload])
        # Keeps every frame within the default reader's limits: cut the long values, harder
        # each time, until it fits; what the agent saw stays in it, up to the cap.
        for limit in _VALUE_CAPS:
            if len(packed) <= fmt.MAX_RECORD_BYTES:
                return packed
            packed = self._packer.pack([t, kind, capped(payload, limit)])
        if len(packed) > fmt.MAX_RECORD_BYTES:
            # Too many small values (a result of a million short rows): keep the small fields
            # of the record and say which were left out.
            kept: dict[str, Any] = {}
            dropped: list[str] = []
            if type(payload) is dict:
                for key, value in payload.items():
                    if len(self._packer.pack(value)) <= _FIELD_KEPT:
                        kept[key] = value
                    else:
                        dropped.append(str(key))
            kept["capped"] = {"bytes": len(packed), "dropped": dropped}
            packed = self._packer.pack([t, kind, kept])
        return packed

    def _compress(self, records: list[bytes]) -> bytes:
        raw = self._packer.pack_array_header(len(records)) + b"".join(records)
        compressed: bytes = self._compressor.compress(raw)
        return compressed

    def _frame(self, frame_type: int, body: bytes) -> bytes:
        # The chain advances before the write: if the write fails the writer is broken anyway.
        self._chain = fmt.next_chain(self._chain, self._frames, frame_type, body)
        self._frames += 1
        return fmt.encode_frame(frame_type, body, self._chain)

    def _write(self, data: bytes) -> None:
        assert self._fd is not None
        view = memoryview(data)
        try:
            while view:
                written = os.write(self._fd, view)
                self._bytes_written += written
                view = view[written:]
        except OSError as exc:
            self._fail(exc)

    def _fail(self, exc: OSError) -> NoReturn:
        self._broken = f"{exc}"
        raise RecordingError(f"recording {self._path} could not be written: {exc}") from exc

    def _check_usable(self) -> None:
        if self._broken is not None:
            raise RecordingError(
                f"recording {self._path} is broken after a write error ({self._broken}); "
                "the session must end"
            )
        if self._closed:
            raise RecordingError(f"recording {self._path} is already closed")

    def _release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                os.close(fd)


def _complete_header(header: dict[str, Any], key_id: str) -> dict[str, Any]:
    full = dict(header)
    session_id = full.get("session_id")
    if not isinstance(session_id, str) or not session_id:
        raise ValueError(f"recording header needs a non-empty str session_id, got {session_id!r}")
    if full.setdefault("v", fmt.HEADER_VERSION) != fmt.HEADER_VERSION:
        raise ValueError(
            f"recording header v={full['v']!r}; this writer writes v={fmt.HEADER_VERSION}"
        )
    if full.setdefault("key_id", key_id) != key_id:
        raise ValueError(
            f"recording header key_id {full['key_id']!r} is not the signing key's {key_id}"
        )
    started = full.setdefault("started", time.time())
    try:
        if isinstance(started, bool) or not math.isfinite(started):
            raise ValueError
        started_iso = datetime.fromtimestamp(started, UTC).isoformat()
    except (TypeError, ValueError, OverflowError, OSError):
        raise ValueError(
            f"recording header started must be unix seconds, got {started!r}"
        ) from None
    full.setdefault("started_iso", started_iso)
    full.setdefault("gateway_version", gateway.__version__)
    problem = fmt.payload_problem(full, fmt.MAX_PAYLOAD_DEPTH, str_keys_only=True)
    if problem is not None:
        raise TypeError(f"recording header cannot be recorded: {problem}")
    return full


def _fsync_dir(path: Path) -> None:
    # Makes the file's name durable too; some filesystems refuse fsync on directories.
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


#: Per-value caps tried, in order, for a record over the size limit.
_VALUE_CAPS = (256 << 10, 16 << 10, 1 << 10)
_FIELD_KEPT = 64 << 10  # a field of an oversized record kept whole when it packs to this or less


def capped(payload: Any, limit: int) -> Any:
    """``payload`` with every str/bytes longer than ``limit`` cut to ``limit`` (a str gets a
    note of how much was cut); a dict payload says so in ``capped``. Walks at most as deep as a
    record may nest, without recursion into anything deeper."""
    count = 0

    def cut(value: Any, depth: int) -> Any:
        nonlocal count
        kind = type(value)
        if kind is str and len(value) > limit:
            count += 1
            return value[:limit] + f"... [wardgate: {len(value) - limit} more characters]"
        if (kind is bytes or kind is bytearray) and len(value) > limit:
            count += 1
            return bytes(value[:limit])
        if depth >= fmt.MAX_PAYLOAD_DEPTH:
            return value
        if kind is dict:
            return {k: cut(v, depth + 1) for k, v in value.items()}
        if kind is list or kind is tuple:
            return [cut(v, depth + 1) for v in value]
        return value

    out = cut(payload, 0)
    if count and type(out) is dict:
        out["capped"] = {"values": count, "limit": limit}
    return out
