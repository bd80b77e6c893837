"""The committed golden recordings: what the real recorder writes, and readable as committed.

Files of a released format version must stay readable by every later reader, so they are
committed rather than generated at test time; this test proves they still match what
``make_golden`` (the real ``RecordingWriter``) produces. Decoded content is compared, not
bytes: another libzstd may compress the same records differently.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.recording.reader import read_recording
from tests.replayer.make_golden import FILES, VERSION_DIR, generate

EXPECTED_STATUS = {
    "postgres": "verified",
    "http": "verified",
    "ssh": "verified",
    "hostile": "verified",
    "truncated": "truncated",
    "tampered": "tampered",
    "forged": "tampered",
}


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return generate(tmp_path_factory.mktemp("golden"))


@pytest.mark.parametrize("name", sorted(FILES))
def test_committed_golden_matches_the_recorder(
    name: str, regenerated: dict[str, Path], public_key: Ed25519PublicKey
) -> None:
    committed = read_recording(VERSION_DIR / FILES[name], public_key=public_key)
    fresh = read_recording(regenerated[name], public_key=public_key)
    assert committed.integrity.status == EXPECTED_STATUS[name]
    assert (committed.header, committed.records, committed.end) == (
        fresh.header, fresh.records, fresh.end)
    assert (committed.integrity.status, committed.integrity.first_bad_frame) == (
        fresh.integrity.status, fresh.integrity.first_bad_frame)


def test_one_directory_per_format_version() -> None:
    assert VERSION_DIR.name == "v1"
    assert sorted(p.name for p in VERSION_DIR.iterdir()) == sorted(FILES.values())
