"""The session index: one summary per recording, cached in SQLite under the data directory.

Opening thousands of recordings every time the browser starts would take minutes, so each
file is read once and its summary kept in ``<data_dir>/replayer-index.sqlite3``, keyed by
path, mtime, size and the public key it was verified with. A refresh lists the directory,
re-reads only files that are new or changed (a recording still being written changes on each
flush) and forgets deleted ones. Statement text is kept too, for the browser's full-text
search, within the bounds below.

The cache is a convenience: when it cannot be created or read (read-only data directory, a
damaged file) the index lives in memory for this run and says so. Its contents came from
recordings, so the UI treats them as untrusted like everything else.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway.recording.reader import ReaderLimits, RecordingFormatError, iter_records
from replayer.model import COMMAND_KINDS, decision_of, field_dict, field_float, field_str
from replayer.sanitize import clean

INDEX_NAME: Final = "replayer-index.sqlite3"
SCHEMA_VERSION: Final = 1
SUFFIX: Final = ".wgrec"
STATEMENT_CAP: Final = 64 * 1024  # characters of one statement kept for search
SESSION_TEXT_CAP: Final = 1024 * 1024  # characters of statements kept per session
BATCH: Final = 25  # summaries per commit and per UI update
DEFAULT_LIMITS: Final = ReaderLimits()

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    path TEXT PRIMARY KEY, mtime_ns INTEGER NOT NULL, size INTEGER NOT NULL,
    key_tag TEXT NOT NULL, summary TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS statements (path TEXT NOT NULL, text TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS statements_path ON statements(path);
"""


@dataclass(frozen=True, slots=True)
class SessionSummary:
    path: str
    name: str
    session_id: str
    started: float | None
    identity: str
    groups: tuple[str, ...]
    target: str
    protocol: str
    duration: float
    commands: int
    denied: int
    reviewed: int
    decisions: tuple[str, ...]
    integrity: str  # verified | unsigned | truncated | tampered | unreadable
    integrity_message: str
    first_bad_frame: int | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=True)

    @classmethod
    def from_json(cls, raw: str) -> SessionSummary | None:
        """None for anything that is not what ``to_json`` wrote (the cache is re-read then)."""
        try:
            data = json.loads(raw)
            return cls(
                path=_typed(data["path"], str),
                name=_typed(data["name"], str),
                session_id=_typed(data["session_id"], str),
                started=None if data["started"] is None else float(_number(data["started"])),
                identity=_typed(data["identity"], str),
                groups=tuple(_typed(g, str) for g in _typed(data["groups"], list)),
                target=_typed(data["target"], str),
                protocol=_typed(data["protocol"], str),
                duration=float(_number(data["duration"])),
                commands=_typed(data["commands"], int),
                denied=_typed(data["denied"], int),
                reviewed=_typed(data["reviewed"], int),
                decisions=tuple(_typed(d, str) for d in _typed(data["decisions"], list)),
                integrity=_typed(data["integrity"], str),
                integrity_message=_typed(data["integrity_message"], str),
                first_bad_frame=(None if data.get("first_bad_frame") is None
                                 else _typed(data["first_bad_frame"], int)),
            )
        except (ValueError, KeyError, TypeError):
            return None


def _typed(value: Any, kind: type) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise TypeError(f"expected {kind.__name__}")
    return value


def _number(value: Any) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError("expected a number")
    return value


def key_tag(public_key: Ed25519PublicKey | None) -> str:
    """Which key verified a cached verdict: a new key means every file is checked again."""
    if public_key is None:
        return "none"
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def list_recordings(root: Path) -> list[Path]:
    """``root`` itself if it is a file, else ``*.wgrec`` in it and in its day directories.

    Symlinked directories are not followed (a link could point anywhere, or at itself).
    """
    if root.is_file():
        return [root]
    found: list[Path] = []

    def scan(directory: Path, depth: int) -> None:
        try:
            entries = list(os.scandir(directory))
        except OSError:
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    if depth == 0:
                        scan(Path(entry.path), 1)
                elif entry.name.endswith(SUFFIX) and entry.is_file():
                    found.append(Path(entry.path))
            except OSError:
                continue

    scan(root, 0)
    found.sort(key=lambda p: p.name, reverse=True)
    return found


def summarize_file(
    path: Path, public_key: Ed25519PublicKey | None, limits: ReaderLimits = DEFAULT_LIMITS
) -> tuple[SessionSummary, list[str]]:
    """Read one recording (streamed: memory stays bounded) into its summary and statements."""
    statements: list[str] = []
    text_budget = SESSION_TEXT_CAP
    commands = denied = held = 0
    reviews: set[str] = set()
    decisions: set[str] = set()
    duration = 0.0
    header: dict[str, Any] = {}
    status, message, first_bad = "unreadable", "", None
    try:
        with iter_records(path, public_key=public_key, limits=limits) as stream:
            header = stream.header if isinstance(stream.header, dict) else {}
            for rec in stream:
                duration = max(duration, rec.t)
                if rec.kind in COMMAND_KINDS:
                    commands += 1
                    action = decision_of(rec.payload)
                    if action is not None:
                        decisions.add(action)
                    if action == "deny":
                        denied += 1
                    elif action == "review":
                        held += 1
                    text = _statement_text(rec.kind, rec.payload)
                    if text and text_budget > 0:
                        text = text[: min(STATEMENT_CAP, text_budget)]
                        text_budget -= len(text)
                        statements.append(text.casefold())
                elif rec.kind == "review_requested":
                    decisions.add("review")
                    reviews.add(field_str(rec.payload, "review", 64) or f"review@{rec.t}")
            integrity = stream.integrity
        if integrity is not None:
            status, message, first_bad = (
                integrity.status, integrity.message, integrity.first_bad_frame
            )
    except RecordingFormatError as exc:
        message = str(exc)
    identity = field_dict(header, "identity")
    target = header.get("target")
    groups = identity.get("groups")
    summary = SessionSummary(
        path=str(path),
        name=path.name,
        session_id=field_str(header, "session_id", 128),
        started=field_float(header, "started"),
        identity=field_str(identity, "sub", 200),
        groups=tuple(clean(g, 100) for g in groups[:50]) if isinstance(groups, list) else (),
        target=(field_str(target, "name", 200) if isinstance(target, dict)
                else clean(target, 200) if isinstance(target, str) else ""),
        protocol=field_str(header, "protocol", 32),
        duration=duration,
        commands=commands,
        denied=denied,
        # A held command and its review records describe one review: count the larger side.
        reviewed=max(held, len(reviews)),
        decisions=tuple(sorted(decisions)),
        integrity=status,
        integrity_message=clean(message, 400),
        first_bad_frame=first_bad,
    )
    return summary, statements


def _statement_text(kind: str, payload: Any) -> str:
    if not isinstance(payload, dict):
        return ""
    if kind == "query":
        value = payload.get("sql")
    elif kind == "exec":
        value = payload.get("command")
    else:
        value = f"{payload.get('method', '')} {payload.get('target', '')}"
    if isinstance(value, bytes):
        value = value[: STATEMENT_CAP * 4].decode("utf-8", "replace")
    return value if isinstance(value, str) else ""


class SessionIndex:
    """Summaries of every recording under one root, persisted when possible."""

    def __init__(self, db_path: Path | None) -> None:
        self._lock = threading.Lock()
        self.persistent = False
        self.problem: str | None = None
        self._db = self._open(db_path)

    def _open(self, db_path: Path | None) -> sqlite3.Connection:
        if db_path is not None:
            try:
                # Statement text is as sensitive as the recordings: private to the owner.
                fd = os.open(db_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                os.close(fd)
                db = sqlite3.connect(db_path, check_same_thread=False)
                db.executescript(_SCHEMA)
                row = db.execute("SELECT v FROM meta WHERE k = 'schema'").fetchone()
                if row is None or row[0] != str(SCHEMA_VERSION):
                    db.executescript("DELETE FROM sessions; DELETE FROM statements;")
                    db.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)",
                               (str(SCHEMA_VERSION),))
                    db.commit()
                self.persistent = True
                return db
            except (OSError, sqlite3.Error) as exc:
                self.problem = f"session index {db_path} not usable ({exc}); kept in memory"
        db = sqlite3.connect(":memory:", check_same_thread=False)
        db.executescript(_SCHEMA)
        return db

    @contextlib.contextmanager
    def _locked(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._db

    def close(self) -> None:
        with self._locked() as db:
            db.close()

    def cached(self, root: Path) -> list[SessionSummary]:
        """What the cache knows about ``root`` already, without touching any recording."""
        prefix = str(root) if root.is_file() else str(root).rstrip(os.sep) + os.sep
        with self._locked() as db:
            rows = db.execute(
                "SELECT summary FROM sessions WHERE path = ? OR substr(path, 1, ?) = ?",
                (str(root), len(prefix), prefix),
            ).fetchall()
        out = [s for (raw,) in rows if (s := SessionSummary.from_json(raw)) is not None]
        out.sort(key=lambda s: s.name, reverse=True)
        return out

    def refresh(
        self,
        root: Path,
        public_key: Ed25519PublicKey | None,
        *,
        on_batch: Callable[[list[SessionSummary]], None] | None = None,
        cancelled: Callable[[], bool] = lambda: False,
        limits: ReaderLimits = DEFAULT_LIMITS,
    ) -> list[SessionSummary]:
        """Bring the index up to date with ``root``; report changed summaries in batches."""
        tag = key_tag(public_key)
        paths = list_recordings(root)
        with self._locked() as db:
            known = {
                path: (mtime, size, ktag, raw)
                for path, mtime, size, ktag, raw in db.execute(
                    "SELECT path, mtime_ns, size, key_tag, summary FROM sessions"
                )
            }
        result: list[SessionSummary] = []
        batch: list[tuple[SessionSummary, list[str], int, int]] = []
        for path in paths:
            if cancelled():
                break
            try:
                st = path.stat()
            except OSError:
                continue
            cached = known.get(str(path))
            if cached is not None and cached[:3] == (st.st_mtime_ns, st.st_size, tag):
                summary = SessionSummary.from_json(cached[3])
                if summary is not None:
                    result.append(summary)
                    continue
            summary, statements = summarize_file(path, public_key, limits)
            result.append(summary)
            batch.append((summary, statements, st.st_mtime_ns, st.st_size))
            if len(batch) >= BATCH:
                self._store(batch, tag)
                if on_batch is not None:
                    on_batch([item[0] for item in batch])
                batch = []
        if batch:
            self._store(batch, tag)
            if on_batch is not None:
                on_batch([item[0] for item in batch])
        if not cancelled():
            self._forget_missing(root, {str(p) for p in paths})
        return result

    def _store(self, batch: list[tuple[SessionSummary, list[str], int, int]], tag: str) -> None:
        with self._locked() as db:
            try:
                for summary, statements, mtime, size in batch:
                    db.execute("DELETE FROM statements WHERE path = ?", (summary.path,))
                    db.execute(
                        "INSERT OR REPLACE INTO sessions VALUES (?, ?, ?, ?, ?)",
                        (summary.path, mtime, size, tag, summary.to_json()),
                    )
                    db.executemany(
                        "INSERT INTO statements VALUES (?, ?)",
                        [(summary.path, text) for text in statements],
                    )
                db.commit()
            except sqlite3.Error as exc:
                db.rollback()
                self.problem = f"session index not updated: {exc}"

    def _forget_missing(self, root: Path, present: set[str]) -> None:
        if root.is_file():
            return
        prefix = str(root).rstrip(os.sep) + os.sep
        with self._locked() as db:
            stale = [
                path for (path,) in db.execute(
                    "SELECT path FROM sessions WHERE substr(path, 1, ?) = ?",
                    (len(prefix), prefix),
                )
                if path not in present
            ]
            try:
                for path in stale:
                    db.execute("DELETE FROM sessions WHERE path = ?", (path,))
                    db.execute("DELETE FROM statements WHERE path = ?", (path,))
                db.commit()
            except sqlite3.Error:
                db.rollback()

    def search(self, needle: str) -> set[str]:
        """Paths of sessions with a statement containing ``needle`` (case-insensitive)."""
        folded = needle.casefold()
        if not folded:
            return set()
        with self._locked() as db:
            rows = db.execute(
                "SELECT DISTINCT path FROM statements WHERE instr(text, ?) > 0", (folded,)
            ).fetchall()
        return {path for (path,) in rows}
