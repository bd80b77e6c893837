"""Read and verify ``.wgrec`` recordings without trusting them.

This is the only recording module the replayer imports, so it depends on nothing but the
standard library, msgpack, zstandard, cryptography and ``gateway.recording.format``.

Damage inside a file never raises: the reader keeps every whole frame before it and reports
what it found through ``Integrity``. Only a file that cannot be opened, is not a recording at
all, or is larger than the caller's limits raises ``RecordingFormatError``. Every size is
checked before it is allocated (see ``ReaderLimits``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal, NamedTuple, Self

import msgpack  # type: ignore[import-untyped]
import zstandard
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.recording import format as fmt
from gateway.recording.format import RecordingFormatError

__all__ = [
    "Integrity",
    "ReaderLimits",
    "Record",
    "RecordStream",
    "Recording",
    "RecordingFormatError",
    "iter_records",
    "read_recording",
    "verify_recording",
]

Status = Literal["verified", "unsigned", "truncated", "tampered"]


class Record(NamedTuple):
    t: float  # seconds since the session started
    kind: str
    payload: Any


@dataclass(frozen=True, slots=True)
class Integrity:
    """What the reader established about a file.

    verified:  complete, hash chain intact, seal signature valid for the given key.
    unsigned:  complete and chain intact, but no public key was given, so nothing proves who
               wrote it (anyone can recompute a hash chain).
    truncated: the file stops before its seal (crash, kill -9, copy in progress, cut); the
               frames before ``first_bad_frame`` are intact.
    tampered:  frame ``first_bad_frame`` is damaged, forged, out of place or out of limits.
    """

    status: Status
    first_bad_frame: int | None
    message: str


@dataclass(frozen=True, slots=True)
class ReaderLimits:
    """Bounds applied before anything is allocated. Defaults admit everything the writer emits."""

    max_frames: int = 10_000_000
    max_frame_bytes: int = 8 << 20  # compressed body of one frame
    max_frame_decompressed_bytes: int = 64 << 20
    max_window_size: int = 8 << 20  # zstd window; the writer's frames use at most 2 MiB
    max_total_bytes: int = 256 << 20  # decompressed bytes read_recording() holds in memory
    max_str_len: int = 16 << 20
    max_bin_len: int = 16 << 20
    max_array_len: int = 1 << 22
    max_map_len: int = 1 << 20
    max_depth: int = fmt.MAX_PAYLOAD_DEPTH  # container nesting inside one payload


@dataclass(slots=True)
class Recording:
    header: dict[str, Any]
    records: list[Record]  # without the header and end records
    end: dict[str, Any] | None
    truncated: bool  # no intact seal was reached: records may be missing at the end
    integrity: Integrity


class _Stop(Exception):
    """Ends the scan; carries the verdict. Internal control flow, never escapes."""

    def __init__(self, integrity: Integrity) -> None:
        super().__init__(integrity.message)
        self.integrity = integrity


def _tampered(index: int, message: str) -> _Stop:
    return _Stop(Integrity("tampered", index, f"tampered: frame {index}: {message}"))


def _truncated(index: int, message: str) -> _Stop:
    return _Stop(Integrity("truncated", index, f"truncated: {message}"))


class _Scanner:
    """Walks a file frame by frame, verifying the chain before trusting a frame's contents."""

    def __init__(
        self,
        path: Path,
        public_key: Ed25519PublicKey | None,
        limits: ReaderLimits,
        max_total: int | None,
    ) -> None:
        self.path = path
        self.public_key = public_key
        self.limits = limits
        self.max_total = max_total
        self.header: dict[str, Any] = {}
        self.end: dict[str, Any] | None = None
        self.integrity: Integrity | None = None
        self.reached_seal = False
        self._dctx = zstandard.ZstdDecompressor(max_window_size=limits.max_window_size)
        self._chain = b""
        self._header_body = b""
        self._offset = 0
        self._total = 0
        try:
            self._file: IO[bytes] = open(path, "rb")  # noqa: SIM115 - closed by close()
        except OSError as exc:
            raise RecordingFormatError(
                f"recording {path} could not be read: {exc.strerror or exc}"
            ) from exc

    def close(self) -> None:
        self._file.close()

    def frames(self) -> Iterator[list[Record]]:
        """Yield the records of each whole, verified data frame; set ``integrity`` at the end."""
        try:
            self._read_magic()
            index = 0
            while True:
                records = self._next_frame(index)
                if records is None:  # the seal was checked and is the last thing in the file
                    return
                yield records
                index += 1
        except _Stop as stop:
            self.integrity = stop.integrity

    def _read(self, n: int) -> bytes:
        try:
            data = self._file.read(n)
        except OSError as exc:
            raise RecordingFormatError(
                f"recording {self.path} could not be read: {exc.strerror or exc}"
            ) from exc
        self._offset += len(data)
        return data

    def _read_magic(self) -> None:
        raw = self._read(len(fmt.MAGIC))
        prefix = fmt.MAGIC_PREFIX
        if raw[: len(prefix)] != prefix[: len(raw)]:
            raise RecordingFormatError(
                f"{self.path} is not a wardgate recording (it does not start with the "
                "recording magic bytes)"
            )
        if len(raw) == len(fmt.MAGIC) and raw[-1] != fmt.FORMAT_VERSION:
            raise RecordingFormatError(
                f"{self.path} is recording format version {raw[-1]}; "
                f"this reader supports version {fmt.FORMAT_VERSION}"
            )
        if len(raw) < len(fmt.MAGIC):
            raise _truncated(0, f"file ends inside the magic ({len(raw)} bytes), no header")

    def _next_frame(self, index: int) -> list[Record] | None:
        if index >= self.limits.max_frames:
            raise RecordingFormatError(
                f"{self.path} has more than {self.limits.max_frames} frames "
                "(ReaderLimits.max_frames); raise the limit to read it"
            )
        start = self._offset
        raw = self._read(fmt.FRAME_HEADER.size)
        if not raw:
            what = "before the header frame" if index == 0 else f"after frame {index - 1}"
            raise _truncated(index, f"file ends {what} without a seal")
        if len(raw) < fmt.FRAME_HEADER.size:
            raise _truncated(index, f"file ends inside the header of frame {index} (byte {start})")
        decoded = fmt.decode_frame_header(raw)
        if decoded is None:
            raise _tampered(index, f"frame header checksum mismatch at byte {start}")
        frame_type, length = decoded
        if frame_type == fmt.FRAME_DATA:
            cap = self.limits.max_frame_bytes
        elif frame_type == fmt.FRAME_SEAL:
            cap = fmt.MAX_SEAL_BYTES
        else:
            raise _tampered(index, f"unknown frame type 0x{frame_type:02x} at byte {start}")
        if length > cap:
            raise _tampered(index, f"declares a {length}-byte body, over the limit of {cap}")
        body = self._read(length)
        chain = self._read(fmt.CHAIN_SIZE)
        if len(body) < length or len(chain) < fmt.CHAIN_SIZE:
            raise _truncated(index, f"file ends inside frame {index} (starts at byte {start})")

        if frame_type == fmt.FRAME_SEAL:
            if index == 0:
                raise _tampered(0, "a seal where the header frame belongs")
            final_chain = self._chain  # what the signature covers: the chain before the seal
            self._check_chain(index, frame_type, body, chain)
            self._check_seal(index, body, final_chain)
            return None
        if index == 0:
            # The chain seed needs the session id, which lives inside this frame: decode first.
            records = self._decode(index, body)
            self._take_header(records)
            self._chain = fmt.chain_seed(self.header["session_id"])
            self._header_body = body
            self._check_chain(index, frame_type, body, chain)
            return []
        self._check_chain(index, frame_type, body, chain)
        if self.end is not None:
            raise _tampered(index, "data frame after the end record")
        return self._take_records(index, self._decode(index, body))

    def _check_chain(self, index: int, frame_type: int, body: bytes, stored: bytes) -> None:
        expected = fmt.next_chain(self._chain, index, frame_type, body)
        if expected != stored:
            raise _tampered(
                index,
                "hash chain broken (frame modified, dropped, reordered, duplicated "
                "or taken from another recording)",
            )
        self._chain = expected

    def _decode(self, index: int, body: bytes) -> list[Any]:
        lim = self.limits
        try:
            params = zstandard.get_frame_parameters(body)
        except zstandard.ZstdError as exc:
            raise _tampered(index, f"body is not a zstd frame: {exc}") from None
        size = params.content_size
        if size in (zstandard.CONTENTSIZE_UNKNOWN, zstandard.CONTENTSIZE_ERROR):
            raise _tampered(index, "zstd frame does not declare its content size")
        if size > lim.max_frame_decompressed_bytes:
            raise _tampered(
                index, f"zstd frame declares {size} bytes, over {lim.max_frame_decompressed_bytes}"
            )
        if params.window_size > lim.max_window_size:
            raise _tampered(
                index, f"zstd window of {params.window_size} bytes, over {lim.max_window_size}"
            )
        if self.max_total is not None:
            self._total += size
            if self._total > self.max_total:
                raise RecordingFormatError(
                    f"{self.path} holds more than {self.max_total} bytes of records "
                    "(ReaderLimits.max_total_bytes); stream it with iter_records()"
                )
        # zstd itself refuses output beyond the declared content size, so this is bounded.
        dobj = self._dctx.decompressobj()
        try:
            raw = dobj.decompress(body)
        except zstandard.ZstdError as exc:
            raise _tampered(index, f"zstd: {exc}") from None
        if not dobj.eof or dobj.unused_data or len(raw) != size:
            raise _tampered(index, "body is not exactly one complete zstd frame")
        try:
            # The C unpacker checks each declared length against these caps before allocating
            # and stops at 1024 levels of nesting (StackError); payload_problem then applies the
            # real depth cap without recursion. RecursionError covers msgpack's pure-Python
            # fallback, which recurses.
            value = msgpack.unpackb(
                raw,
                raw=False,
                use_list=True,
                strict_map_key=True,
                max_str_len=lim.max_str_len,
                max_bin_len=lim.max_bin_len,
                max_array_len=lim.max_array_len,
                max_map_len=lim.max_map_len,
                max_ext_len=0,
            )
        except (msgpack.UnpackException, ValueError, TypeError, RecursionError) as exc:
            raise _tampered(index, f"msgpack: {type(exc).__name__}: {exc}") from None
        if not isinstance(value, list):
            raise _tampered(index, "frame does not hold an array of records")
        return value

    def _take_header(self, raw: list[Any]) -> None:
        if len(raw) != 1:
            raise _tampered(0, f"header frame holds {len(raw)} records, expected 1")
        _t, kind, payload = self._check_record(0, 0, raw[0], str_keys_only=True)
        if kind != fmt.KIND_HEADER or not isinstance(payload, dict):
            raise _tampered(0, "first record is not a header map")
        if payload.get("v") != fmt.HEADER_VERSION:
            raise _tampered(0, f"header v={payload.get('v')!r}, expected {fmt.HEADER_VERSION}")
        for name in ("session_id", "key_id"):
            if not isinstance(payload.get(name), str) or not payload[name]:
                raise _tampered(0, f"header lacks a str {name}")
        self.header = payload

    def _take_records(self, index: int, raw: list[Any]) -> list[Record]:
        records: list[Record] = []
        for position, item in enumerate(raw):
            rec = self._check_record(index, position, item, str_keys_only=False)
            if self.end is not None:
                raise _tampered(index, f"record {position} follows the end record")
            if rec.kind == fmt.KIND_HEADER:
                raise _tampered(index, f"record {position} is a header outside frame 0")
            if rec.kind == fmt.KIND_END:
                if not isinstance(rec.payload, dict):
                    raise _tampered(index, "end record payload is not a map")
                self.end = rec.payload
            else:
                records.append(rec)
        return records

    def _check_record(self, index: int, position: int, item: Any, *, str_keys_only: bool) -> Record:
        if not isinstance(item, list) or len(item) != 3:
            raise _tampered(index, f"record {position} is not [t, kind, payload]")
        t, kind, payload = item
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t):
            raise _tampered(index, f"record {position} has a non-numeric time {t!r}")
        if not isinstance(kind, str) or not kind:
            raise _tampered(index, f"record {position} has no str kind")
        problem = fmt.payload_problem(payload, self.limits.max_depth, str_keys_only=str_keys_only)
        if problem is not None:
            raise _tampered(index, f"record {position} ({kind}): {problem}")
        return Record(float(t), kind, payload)

    def _check_seal(self, index: int, body: bytes, final_chain: bytes) -> None:
        # The chain reached this seal intact: every data frame the writer wrote has been read.
        self.reached_seal = True
        try:
            seal = msgpack.unpackb(
                body,
                raw=False,
                strict_map_key=True,
                max_str_len=64,
                max_bin_len=64,
                max_array_len=0,
                max_map_len=len(fmt.SEAL_KEYS),
                max_ext_len=0,
            )
        except (msgpack.UnpackException, ValueError, TypeError) as exc:
            raise _tampered(index, f"seal is not readable: {exc}") from None
        if not isinstance(seal, dict) or set(seal) != fmt.SEAL_KEYS:
            raise _tampered(index, "seal is not a map of alg, key_id, frames, sig")
        if seal["alg"] != fmt.SEAL_ALG:
            raise _tampered(index, f"seal algorithm {seal['alg']!r} is not {fmt.SEAL_ALG}")
        if not isinstance(seal["sig"], bytes):
            raise _tampered(index, "seal signature is not bytes")
        if isinstance(seal["frames"], bool) or seal["frames"] != index:
            raise _tampered(index, f"seal counts {seal['frames']!r} frames, the file has {index}")
        if self.end is None:
            raise _tampered(index, "seal without an end record")
        if self._read(1):
            raise _tampered(index + 1, "data after the seal")
        if seal["key_id"] != self.header["key_id"]:
            raise _tampered(
                index, f"seal names key {seal['key_id']!r}, header names {self.header['key_id']!r}"
            )
        if self.public_key is None:
            raise _Stop(
                Integrity(
                    "unsigned",
                    None,
                    f"unsigned: {index} frames, hash chain intact, sealed by key "
                    f"{seal['key_id']!r}; signature not checked (no public key given)",
                )
            )
        expected = fmt.key_id_of(self.public_key)
        if seal["key_id"] != expected:
            raise _tampered(
                index, f"signature invalid: sealed by key {seal['key_id']!r}, expected {expected}"
            )
        message = fmt.seal_message(
            self.header["session_id"], fmt.header_digest(self._header_body), final_chain, index
        )
        try:
            self.public_key.verify(seal["sig"], message)
        except InvalidSignature:
            raise _tampered(index, f"signature invalid for key {expected}") from None
        raise _Stop(
            Integrity(
                "verified",
                None,
                f"verified: {index} frames, hash chain intact, signed by key {expected}",
            )
        )


class RecordStream:
    """Records of one recording, read frame by frame (``iter_records``).

    The header frame is read on construction, so ``header`` is available at once; ``end``,
    ``integrity`` and ``truncated`` are final once iteration stops. Close it (or use ``with``)
    when abandoning iteration early.
    """

    def __init__(
        self, path: Path, public_key: Ed25519PublicKey | None, limits: ReaderLimits
    ) -> None:
        self._scanner = _Scanner(path, public_key, limits, None)
        self._frames = self._scanner.frames()
        self._buffered: list[Record] = []
        self._done = False
        self._pull()  # frame 0: the header

    @property
    def header(self) -> dict[str, Any]:
        return self._scanner.header

    @property
    def end(self) -> dict[str, Any] | None:
        return self._scanner.end

    @property
    def integrity(self) -> Integrity | None:
        return self._scanner.integrity

    @property
    def truncated(self) -> bool:
        return not self._scanner.reached_seal

    def __iter__(self) -> Iterator[Record]:
        return self

    def __next__(self) -> Record:
        while not self._buffered:
            if self._done:
                raise StopIteration
            self._pull()
        return self._buffered.pop()

    def _pull(self) -> None:
        try:
            self._buffered = list(reversed(next(self._frames)))
        except StopIteration:
            self.close()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self._done = True
        self._scanner.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def iter_records(
    path: Path,
    *,
    public_key: Ed25519PublicKey | None = None,
    limits: ReaderLimits = ReaderLimits(),
) -> RecordStream:
    """Stream the records of ``path`` (header and end records excluded, as in ``Recording``)."""
    return RecordStream(path, public_key, limits)


def read_recording(
    path: Path,
    *,
    public_key: Ed25519PublicKey | None = None,
    limits: ReaderLimits = ReaderLimits(),
) -> Recording:
    """Read every whole frame of ``path`` and judge its integrity.

    Raises RecordingFormatError only when the file cannot be read, is not a recording, or
    exceeds ``limits.max_frames``/``limits.max_total_bytes``.
    """
    scanner = _Scanner(path, public_key, limits, limits.max_total_bytes)
    try:
        records = [rec for frame in scanner.frames() for rec in frame]
    finally:
        scanner.close()
    assert scanner.integrity is not None  # frames() always ends with a verdict
    return Recording(
        header=scanner.header,
        records=records,
        end=scanner.end,
        truncated=not scanner.reached_seal,
        integrity=scanner.integrity,
    )


def verify_recording(
    path: Path,
    public_key: Ed25519PublicKey | None,
    *,
    limits: ReaderLimits = ReaderLimits(),
) -> Integrity:
    """Check chain and seal of ``path`` without keeping its records."""
    scanner = _Scanner(path, public_key, limits, None)
    try:
        for _ in scanner.frames():
            pass
    finally:
        scanner.close()
    assert scanner.integrity is not None
    return scanner.integrity
