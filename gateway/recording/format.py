"""The ``.wgrec`` on-disk format: constants and pure helpers shared by the writer and the reader.

The byte-exact specification is docs/recording-format.md; this module is its executable form.
It imports nothing of the running gateway, so the reader (and through it the replayer) can use
it without pulling in the core.

Layout, in brief::

    file  = MAGIC frame* [seal]
    frame = type:u8  length:u32be  hcrc:u32be  body[length]  chain[32]

``hcrc`` is CRC-32 of ``type || length``: without it a flipped length bit at the tail would
look like a cut file ("truncated") instead of damage ("tampered").
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

MAGIC_PREFIX = b"WGREC"
FORMAT_VERSION = 1
MAGIC = MAGIC_PREFIX + bytes([FORMAT_VERSION])

# The "v" field of the header record; bumped when the header's meaning changes.
HEADER_VERSION = 1

FRAME_DATA = 0x44  # "D": body is one zstd frame holding a msgpack array of records
FRAME_SEAL = 0x53  # "S": body is a msgpack map holding the Ed25519 signature

FRAME_HEADER = struct.Struct(">BII")  # type, body length, CRC-32 of the first 5 bytes
CHAIN_SIZE = 32  # SHA-256
FRAME_OVERHEAD = FRAME_HEADER.size + CHAIN_SIZE

KIND_HEADER = "header"
KIND_END = "end"
RESERVED_KINDS = frozenset({KIND_HEADER, KIND_END})

SEAL_ALG = "ed25519"
SEAL_CONTEXT = b"wardgate-recording-seal-v1\x00"
SEAL_KEYS = frozenset({"alg", "key_id", "frames", "sig"})
MAX_SEAL_BYTES = 512

# Writer-side bounds. The reader's defaults (ReaderLimits) are strictly looser, so that a frame
# the writer produced is never rejected by a default reader.
FLUSH_THRESHOLD_BYTES = 1 << 20  # pending records are flushed once they reach 1 MiB
MAX_RECORD_BYTES = 4 << 20  # one packed record; callers cap bodies and rows far below this
MAX_PAYLOAD_DEPTH = 32  # nesting of containers inside one payload
ZSTD_LEVEL = 3


class RecordingFormatError(ValueError):
    """The file is not a wardgate recording, or cannot be read at all.

    Damage *inside* a recording is not an exception: the reader reports it through
    ``Integrity`` and returns the frames before it.
    """


def chain_seed(session_id: str) -> bytes:
    """chain_{-1}: binds the chain to this file's magic and session, so frames cannot move between files."""
    return hashlib.sha256(MAGIC + session_id.encode("utf-8")).digest()


def next_chain(prev: bytes, index: int, frame_type: int, body: bytes) -> bytes:
    """chain_i = SHA-256(chain_{i-1} || u32be(i) || type || u32be(len) || body)."""
    h = hashlib.sha256(prev)
    h.update(struct.pack(">IBI", index, frame_type, len(body)))
    h.update(body)
    return h.digest()


def encode_frame_header(frame_type: int, length: int) -> bytes:
    head = struct.pack(">BI", frame_type, length)
    return head + struct.pack(">I", zlib.crc32(head))


def decode_frame_header(raw: bytes) -> tuple[int, int] | None:
    """Return (type, length), or None when the header checksum does not match."""
    frame_type, length, crc = FRAME_HEADER.unpack(raw)
    if zlib.crc32(raw[:5]) != crc:
        return None
    return frame_type, length


def encode_frame(frame_type: int, body: bytes, chain: bytes) -> bytes:
    return encode_frame_header(frame_type, len(body)) + body + chain


def header_digest(header_body: bytes) -> bytes:
    """Digest of frame 0's body as stored (compressed): it fixes identity, target and key id."""
    return hashlib.sha256(header_body).digest()


def seal_message(session_id: str, digest: bytes, final_chain: bytes, frame_count: int) -> bytes:
    """The exact bytes the Ed25519 signature covers (see docs/recording-format.md)."""
    sid = session_id.encode("utf-8")
    return b"".join(
        (
            SEAL_CONTEXT,
            MAGIC,
            struct.pack(">H", len(sid)),
            sid,
            digest,
            final_chain,
            struct.pack(">Q", frame_count),
        )
    )


def key_id_of(public_key: Ed25519PublicKey) -> str:
    """First 16 hex chars of SHA-256 over the raw 32-byte public key."""
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


_SCALARS = frozenset({str, bytes, int, float, bool, type(None)})


def payload_problem(value: Any, max_depth: int, *, str_keys_only: bool) -> str | None:
    """Describe the first structural problem of a decoded or to-be-encoded value, or None.

    Walks with an explicit stack (never recursion), so a hostile depth cannot raise
    RecursionError. Map keys must be str (or bytes unless ``str_keys_only``): msgpack's strict
    map-key mode rejects anything else on read, so the writer must refuse it up front.
    """
    # Exact type checks first: this runs on every record a session writes, and isinstance()
    # against tuples of types costs several times more. Subclasses take the slower branch.
    containers = (dict, list, tuple)
    stack: list[tuple[Any, int]] = [(value, 0)]
    pop, push = stack.pop, stack.append
    while stack:
        item, depth = pop()
        kind = type(item)
        if kind is dict or (kind is not list and kind is not tuple and isinstance(item, dict)):
            if depth >= max_depth:
                return f"nested deeper than {max_depth} levels"
            for key, child in item.items():
                if type(key) is not str and not isinstance(key, str) and (
                    str_keys_only or not isinstance(key, bytes)
                ):
                    allowed = "str" if str_keys_only else "str or bytes"
                    return f"map key {key!r} is {type(key).__name__}, must be {allowed}"
                child_type = type(child)
                if child_type is dict or child_type is list or child_type is tuple or (
                    child_type not in _SCALARS and isinstance(child, containers)
                ):
                    push((child, depth + 1))
        elif kind is list or kind is tuple or isinstance(item, (list, tuple)):
            if depth >= max_depth:
                return f"nested deeper than {max_depth} levels"
            for child in item:
                child_type = type(child)
                if child_type is dict or child_type is list or child_type is tuple or (
                    child_type not in _SCALARS and isinstance(child, containers)
                ):
                    push((child, depth + 1))
    return None
