"""Where reviews and grants are kept: a small async interface and its SQLite implementation.

The interface is what a PostgreSQL-backed store must offer for several gateway instances to share
approvals: inserts, reads, filtered lists, and *compare-and-set* updates (a row is written only if
its stored ``version`` is the one the caller read), so the single transition out of ``pending`` is
decided by the database, not by whichever process wrote last.

SQLite runs inline, on the trio thread. Measured on the development machine (WAL,
``synchronous=FULL``, 300-byte rows): an insert costs ~0.3 ms, a compare-and-set update ~0.1 ms, a
keyed read ~5 µs, while a hop through ``trio.to_thread`` alone costs ~90 µs. Store calls happen
only when a command is held, decided or a grant changes (human-scale events), never per statement
(the grants a statement is judged against come from the service's memory). Running inline also
keeps trio's MockClock honest in tests: a thread in flight would let the clock jump past a deadline.
``synchronous=FULL`` because an approved grant must survive a power cut, not only a crash.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any, Protocol

from gateway.approvals.models import (
    Grant,
    GrantState,
    Review,
    ReviewState,
    Vote,
    from_jsonable,
    jsonable,
)
from gateway.errors import GatewayError

SCHEMA_VERSION = 1
STATE_FILE = "state.sqlite3"
MAX_LIST = 1000  # a list never returns more rows than this, whatever the caller asks

_SCHEMA = """
CREATE TABLE IF NOT EXISTS reviews (
    id          TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    session_id  TEXT NOT NULL,
    requester   TEXT NOT NULL,
    target      TEXT NOT NULL,
    state       TEXT NOT NULL,
    created_at  REAL NOT NULL,
    version     INTEGER NOT NULL,
    body        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS reviews_state ON reviews (state, requester);
CREATE INDEX IF NOT EXISTS reviews_fingerprint ON reviews (fingerprint, state);
CREATE INDEX IF NOT EXISTS reviews_created ON reviews (created_at);
CREATE TABLE IF NOT EXISTS grants (
    id           TEXT PRIMARY KEY,
    requester    TEXT NOT NULL,
    target       TEXT NOT NULL,
    grant_name   TEXT NOT NULL,
    state        TEXT NOT NULL,
    requested_at REAL NOT NULL,
    version      INTEGER NOT NULL,
    body         TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS grants_state ON grants (state, requester);
CREATE INDEX IF NOT EXISTS grants_requested ON grants (requested_at);
"""


class ApprovalStore(Protocol):
    """What the approval service needs from storage. Every method may do I/O."""

    async def insert_review(self, review: Review) -> None: ...

    async def get_review(self, review_id: str) -> Review | None: ...

    async def update_review(self, review: Review) -> bool:
        """Write ``review`` if the stored row still has ``review.version - 1``; False if not."""
        ...

    async def list_reviews(
        self,
        *,
        states: frozenset[ReviewState] | None = None,
        requester: str | None = None,
        limit: int = 100,
    ) -> list[Review]:
        """Newest first."""
        ...

    async def count_pending_reviews(self, requester: str) -> int: ...

    async def insert_grant(self, grant: Grant) -> None: ...

    async def get_grant(self, grant_id: str) -> Grant | None: ...

    async def update_grant(self, grant: Grant) -> bool: ...

    async def list_grants(
        self,
        *,
        states: frozenset[GrantState] | None = None,
        requester: str | None = None,
        limit: int = 100,
    ) -> list[Grant]: ...

    async def count_pending_grants(self, requester: str) -> int: ...

    async def approved_grants(self) -> list[Grant]:
        """Every grant in state ``approved`` (expired or not), unbounded: loaded at start-up."""
        ...

    async def close(self) -> None: ...


class SQLiteApprovalStore:
    """The embedded default: ``<data_dir>/state.sqlite3``, one gateway process at a time."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self._db = self._open(self.path)
        except sqlite3.Error as exc:
            raise GatewayError(
                f"approval state {self.path} cannot be opened: {exc}; check that data_dir is "
                "writable and that the file is a wardgate state database"
            ) from exc

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> SQLiteApprovalStore:
        return cls(Path(data_dir) / STATE_FILE)

    @staticmethod
    def _open(path: Path) -> sqlite3.Connection:
        if not path.exists():
            # Statements awaiting approval can hold sensitive text: private from the start,
            # whatever the umask.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            os.close(fd)
        db = sqlite3.connect(path, isolation_level=None, timeout=5.0)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA foreign_keys=ON")
        found = db.execute("PRAGMA user_version").fetchone()[0]
        if found > SCHEMA_VERSION:
            db.close()
            raise sqlite3.DatabaseError(
                f"schema version {found} is newer than this gateway understands "
                f"({SCHEMA_VERSION}); run the newer gateway or move the file away"
            )
        db.executescript(_SCHEMA)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        return db

    async def close(self) -> None:
        self._db.close()

    # -- reviews ----------------------------------------------------------------------------
    async def insert_review(self, review: Review) -> None:
        with self._db:
            self._db.execute(
                "INSERT INTO reviews (id, fingerprint, session_id, requester, target, state, "
                "created_at, version, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    review.id, review.fingerprint, review.session_id, review.requester,
                    review.target, str(review.state), review.created_at, review.version,
                    json.dumps(review_to_dict(review)),
                ),
            )  # fmt: skip

    async def get_review(self, review_id: str) -> Review | None:
        row = self._db.execute("SELECT body FROM reviews WHERE id = ?", (review_id,)).fetchone()
        return review_from_dict(json.loads(row[0])) if row else None

    async def update_review(self, review: Review) -> bool:
        with self._db:
            cursor = self._db.execute(
                "UPDATE reviews SET state = ?, version = ?, body = ? WHERE id = ? AND version = ?",
                (
                    str(review.state), review.version, json.dumps(review_to_dict(review)),
                    review.id, review.version - 1,
                ),
            )  # fmt: skip
        return cursor.rowcount == 1

    async def list_reviews(
        self,
        *,
        states: frozenset[ReviewState] | None = None,
        requester: str | None = None,
        limit: int = 100,
    ) -> list[Review]:
        where, args = _filters(states, requester)
        rows = self._db.execute(
            f"SELECT body FROM reviews{where} ORDER BY created_at DESC, id LIMIT ?",
            (*args, _bounded(limit)),
        ).fetchall()
        return [review_from_dict(json.loads(r[0])) for r in rows]

    async def count_pending_reviews(self, requester: str) -> int:
        row = self._db.execute(
            "SELECT count(*) FROM reviews WHERE state = 'pending' AND requester = ?", (requester,)
        ).fetchone()
        return int(row[0])

    # -- grants -----------------------------------------------------------------------------
    async def insert_grant(self, grant: Grant) -> None:
        with self._db:
            self._db.execute(
                "INSERT INTO grants (id, requester, target, grant_name, state, requested_at, "
                "version, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    grant.id, grant.requester, grant.target, grant.grant, str(grant.state),
                    grant.requested_at, grant.version, json.dumps(grant_to_dict(grant)),
                ),
            )  # fmt: skip

    async def get_grant(self, grant_id: str) -> Grant | None:
        row = self._db.execute("SELECT body FROM grants WHERE id = ?", (grant_id,)).fetchone()
        return grant_from_dict(json.loads(row[0])) if row else None

    async def update_grant(self, grant: Grant) -> bool:
        with self._db:
            cursor = self._db.execute(
                "UPDATE grants SET state = ?, version = ?, body = ? WHERE id = ? AND version = ?",
                (
                    str(grant.state), grant.version, json.dumps(grant_to_dict(grant)),
                    grant.id, grant.version - 1,
                ),
            )  # fmt: skip
        return cursor.rowcount == 1

    async def list_grants(
        self,
        *,
        states: frozenset[GrantState] | None = None,
        requester: str | None = None,
        limit: int = 100,
    ) -> list[Grant]:
        where, args = _filters(states, requester)
        rows = self._db.execute(
            f"SELECT body FROM grants{where} ORDER BY requested_at DESC, id LIMIT ?",
            (*args, _bounded(limit)),
        ).fetchall()
        return [grant_from_dict(json.loads(r[0])) for r in rows]

    async def count_pending_grants(self, requester: str) -> int:
        row = self._db.execute(
            "SELECT count(*) FROM grants WHERE state = 'pending' AND requester = ?", (requester,)
        ).fetchone()
        return int(row[0])

    async def approved_grants(self) -> list[Grant]:
        rows = self._db.execute("SELECT body FROM grants WHERE state = 'approved'").fetchall()
        return [grant_from_dict(json.loads(r[0])) for r in rows]


def _bounded(limit: int) -> int:
    return max(1, min(int(limit), MAX_LIST))


def _filters(states: frozenset[Any] | None, requester: str | None) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []
    if states is not None:
        ordered = sorted(str(s) for s in states)
        if not ordered:
            return " WHERE 0", []
        clauses.append(f"state IN ({', '.join('?' * len(ordered))})")
        args.extend(ordered)
    if requester is not None:
        clauses.append("requester = ?")
        args.append(requester)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), args


# --- (de)serialisation: the row body is JSON so that the schema can grow without migrations ---


def _vote(v: Vote | None) -> dict[str, Any] | None:
    return None if v is None else {"subject": v.subject, "at": v.at, "reason": v.reason}


def _unvote(d: dict[str, Any] | None) -> Vote | None:
    return None if d is None else Vote(d["subject"], float(d["at"]), d.get("reason", ""))


def review_to_dict(r: Review) -> dict[str, Any]:
    return {
        "id": r.id, "fingerprint": r.fingerprint, "session_id": r.session_id,
        "requester": r.requester, "requester_groups": sorted(r.requester_groups),
        "target": r.target, "protocol": r.protocol, "command": r.command,
        "params": [jsonable(p, readable=False) for p in r.params],
        "kinds": sorted(r.kinds), "rule": r.rule,
        "reason": r.reason, "min_approvals": r.min_approvals,
        "approver_groups": sorted(r.approver_groups), "created_at": r.created_at,
        "expires_at": r.expires_at, "state": str(r.state),
        "approvals": [_vote(v) for v in r.approvals], "denial": _vote(r.denial),
        "decided_at": r.decided_at, "consumed_at": r.consumed_at, "version": r.version,
    }  # fmt: skip


def review_from_dict(d: dict[str, Any]) -> Review:
    return Review(
        id=d["id"], fingerprint=d["fingerprint"], session_id=d["session_id"],
        requester=d["requester"], requester_groups=frozenset(d["requester_groups"]),
        target=d["target"], protocol=d["protocol"], command=d["command"],
        params=tuple(from_jsonable(p) for p in d["params"]), kinds=frozenset(d["kinds"]),
        rule=d["rule"], reason=d["reason"], min_approvals=int(d["min_approvals"]),
        approver_groups=frozenset(d["approver_groups"]), created_at=float(d["created_at"]),
        expires_at=float(d["expires_at"]), state=ReviewState(d["state"]),
        approvals=tuple(v for v in map(_unvote, d["approvals"]) if v is not None),
        denial=_unvote(d["denial"]), decided_at=d["decided_at"], consumed_at=d["consumed_at"],
        version=int(d["version"]),
    )  # fmt: skip


def grant_to_dict(g: Grant) -> dict[str, Any]:
    return {
        "id": g.id, "requester": g.requester, "requester_groups": sorted(g.requester_groups),
        "target": g.target, "grant": g.grant, "duration": g.duration, "reason": g.reason,
        "requested_at": g.requested_at, "state": str(g.state),
        "approved_by": _vote(g.approved_by), "decided_by": _vote(g.decided_by),
        "approved_at": g.approved_at, "expires_at": g.expires_at, "ended_at": g.ended_at,
        "version": g.version,
    }  # fmt: skip


def grant_from_dict(d: dict[str, Any]) -> Grant:
    return Grant(
        id=d["id"], requester=d["requester"], requester_groups=frozenset(d["requester_groups"]),
        target=d["target"], grant=d["grant"], duration=float(d["duration"]), reason=d["reason"],
        requested_at=float(d["requested_at"]), state=GrantState(d["state"]),
        approved_by=_unvote(d["approved_by"]), decided_by=_unvote(d["decided_by"]),
        approved_at=d["approved_at"], expires_at=d["expires_at"], ended_at=d["ended_at"],
        version=int(d["version"]),
    )  # fmt: skip
