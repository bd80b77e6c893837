"""Session recordings: ``.wgrec`` files written while a session runs, read and verified later.

Names are re-exported lazily: importing ``gateway.recording.reader`` (as the replayer does)
must not load the writer, and a package ``__init__`` that imported everything would.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.recording.format import RecordingFormatError
    from gateway.recording.keys import key_id, load_or_create_signing_key, load_public_key
    from gateway.recording.reader import (
        Integrity,
        ReaderLimits,
        Record,
        Recording,
        RecordStream,
        iter_records,
        read_recording,
        verify_recording,
    )
    from gateway.recording.store import RecordingStore
    from gateway.recording.writer import RecordingWriter

_EXPORTS = {
    "RecordingFormatError": "format",
    "key_id": "keys",
    "load_or_create_signing_key": "keys",
    "load_public_key": "keys",
    "Integrity": "reader",
    "ReaderLimits": "reader",
    "Record": "reader",
    "Recording": "reader",
    "RecordStream": "reader",
    "iter_records": "reader",
    "read_recording": "reader",
    "verify_recording": "reader",
    "RecordingStore": "store",
    "RecordingWriter": "writer",
}

__all__ = [
    "Integrity",
    "ReaderLimits",
    "Record",
    "RecordStream",
    "Recording",
    "RecordingFormatError",
    "RecordingStore",
    "RecordingWriter",
    "iter_records",
    "key_id",
    "load_or_create_signing_key",
    "load_public_key",
    "read_recording",
    "verify_recording",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
