"""The session index: summaries of the golden recordings, caching, search, and its failure modes."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

import replayer.index as index_module
from replayer.index import SessionIndex, SessionSummary, list_recordings, summarize_file
from tests.replayer.conftest import DAY, golden
from tests.replayer.make_golden import FILES


def by_name(summaries: list[SessionSummary]) -> dict[str, SessionSummary]:
    names = {filename: name for name, filename in FILES.items()}
    return {names[s.name]: s for s in summaries}


def test_golden_recordings_are_summarised(recordings: Path, public_key: Ed25519PublicKey) -> None:
    index = SessionIndex(None)
    s = by_name(index.refresh(recordings, public_key))
    pg = s["postgres"]
    assert (pg.identity, pg.groups, pg.target, pg.protocol) == (
        "agent-claude", ("ai-agents", "oncall"), "pg-prod", "postgres")
    assert (pg.commands, pg.denied, pg.reviewed) == (6, 2, 2)
    assert pg.decisions == ("allow", "deny", "review")
    assert pg.duration == pytest.approx(52.0)
    assert pg.integrity == "verified"
    assert (s["http"].protocol, s["http"].commands, s["http"].denied) == ("http", 3, 1)
    assert (s["ssh"].protocol, s["ssh"].commands, s["ssh"].denied) == ("ssh", 3, 1)
    assert s["truncated"].integrity == "truncated"
    assert s["tampered"].integrity == "tampered" and s["tampered"].first_bad_frame == 4
    assert s["forged"].integrity == "tampered"
    assert "signature invalid" in s["forged"].integrity_message


def test_without_a_key_intact_files_are_unsigned(recordings: Path) -> None:
    s = by_name(SessionIndex(None).refresh(recordings, None))
    assert s["postgres"].integrity == "unsigned"
    assert s["forged"].integrity == "unsigned"  # only a key can tell a forgery
    assert s["tampered"].integrity == "tampered"  # the chain needs no key


def test_hostile_header_values_are_stored_cleaned(
    recordings: Path, public_key: Ed25519PublicKey
) -> None:
    s = by_name(SessionIndex(None).refresh(recordings, public_key))["hostile"]
    assert s.identity.startswith("mallory␛]52;c;")
    assert "\x1b" not in s.to_json().encode().decode("unicode_escape")


def test_second_refresh_reads_only_changed_files(
    tmp_path: Path, recordings: Path, public_key: Ed25519PublicKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    db = tmp_path / "index.sqlite3"
    SessionIndex(db).refresh(recordings, public_key)
    assert os.stat(db).st_mode & 0o077 == 0  # statement text is private to the owner

    reads: list[str] = []
    real = index_module.summarize_file

    def counting(path: Path, *args: object, **kwargs: object) -> object:
        reads.append(path.name)
        return real(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(index_module, "summarize_file", counting)
    again = SessionIndex(db)  # a new process: the cache comes from disk
    assert len(again.cached(recordings)) == len(FILES)
    assert len(again.refresh(recordings, public_key)) == len(FILES)
    assert reads == []

    changed = recordings / DAY / FILES["http"]
    os.utime(changed, ns=(1, 1))
    again.refresh(recordings, public_key)
    assert reads == [FILES["http"]]

    (recordings / DAY / FILES["ssh"]).unlink()
    assert len(again.refresh(recordings, public_key)) == len(FILES) - 1
    assert len(again.cached(recordings)) == len(FILES) - 1


def test_another_key_verifies_every_file_again(
    tmp_path: Path, recordings: Path, public_key: Ed25519PublicKey
) -> None:
    db = tmp_path / "index.sqlite3"
    SessionIndex(db).refresh(recordings, public_key)
    other = Ed25519PrivateKey.generate().public_key()
    s = by_name(SessionIndex(db).refresh(recordings, other))
    assert s["postgres"].integrity == "tampered"  # sealed by a key that is not `other`


def test_full_text_search_over_statements(
    recordings: Path, public_key: Ed25519PublicKey
) -> None:
    index = SessionIndex(None)
    index.refresh(recordings, public_key)
    hits = {Path(p).name for p in index.search("ORDER_ARCHIVE")}  # case-insensitive
    assert hits == {FILES["postgres"], FILES["forged"], FILES["truncated"]}  # tampered stops early
    assert {Path(p).name for p in index.search("rm -rf /var/www")} == {FILES["ssh"]}
    assert {Path(p).name for p in index.search("/v1/refunds")} == {FILES["http"]}
    assert index.search("no such statement anywhere") == set()


def test_damaged_index_file_is_rebuilt(
    tmp_path: Path, recordings: Path, public_key: Ed25519PublicKey
) -> None:
    db = tmp_path / "index.sqlite3"
    db.write_bytes(b"this is not a sqlite database" * 100)
    index = SessionIndex(db)
    assert not index.persistent and index.problem is not None
    assert len(index.refresh(recordings, public_key)) == len(FILES)


def test_unwritable_index_location_falls_back_to_memory(
    tmp_path: Path, recordings: Path, public_key: Ed25519PublicKey
) -> None:
    index = SessionIndex(tmp_path / "missing-dir" / "index.sqlite3")
    assert not index.persistent
    assert len(index.refresh(recordings, public_key)) == len(FILES)


def test_cached_summary_of_wrong_shape_is_ignored() -> None:
    assert SessionSummary.from_json('{"path": 1}') is None
    assert SessionSummary.from_json("not json") is None


def test_a_file_that_is_not_a_recording_is_listed_as_unreadable(
    recordings: Path, public_key: Ed25519PublicKey
) -> None:
    (recordings / DAY / "junk.wgrec").write_bytes(b"PK\x03\x04 not a recording")
    summary, statements = summarize_file(recordings / DAY / "junk.wgrec", public_key)
    assert summary.integrity == "unreadable"
    assert "not a wardgate recording" in summary.integrity_message
    assert statements == []


def test_listing_skips_hidden_files_and_symlinked_directories(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / DAY).mkdir(parents=True)
    shutil.copy(golden("postgres"), root / DAY / "a.wgrec")
    (root / DAY / ".partial.wgrec").write_bytes(b"")
    (root / "top.wgrec").write_bytes(b"")
    (root / "loop").symlink_to(root)
    assert sorted(p.name for p in list_recordings(root)) == ["a.wgrec", "top.wgrec"]
    assert list_recordings(root / DAY / "a.wgrec") == [root / DAY / "a.wgrec"]
