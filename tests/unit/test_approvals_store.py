"""The SQLite approval store: round trips, compare-and-set updates, filters."""

from __future__ import annotations

import os
import sqlite3
import stat
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from gateway.approvals import (
    Grant,
    GrantState,
    Review,
    ReviewState,
    SQLiteApprovalStore,
    Vote,
    fingerprint,
)
from gateway.errors import GatewayError


def review(
    i: int = 1, *, requester: str = "alice", state: ReviewState = ReviewState.PENDING
) -> Review:
    params = ("5", b"\x00\xff binary", None, 7)
    return Review(
        id=f"r-{i:04d}",
        fingerprint=fingerprint(
            session_id="s1",
            subject=requester,
            target="pg",
            protocol="postgres",
            text=f"DELETE FROM t WHERE id = {i}",
            params=params,
        ),
        session_id="s1",
        requester=requester,
        requester_groups=frozenset({"ai-agents"}),
        target="pg",
        protocol="postgres",
        command=f"DELETE FROM t WHERE id = {i}",
        params=params,
        kinds=frozenset({"delete"}),
        rule="destructive changes need review",
        reason="a person approves deletes",
        min_approvals=2,
        approver_groups=frozenset({"dba", "leads"}),
        created_at=1000.0 + i,
        expires_at=1300.0 + i,
        state=state,
    )


async def test_review_round_trip_keeps_every_field_including_binary_params(tmp_path: Path) -> None:
    store = SQLiteApprovalStore.in_data_dir(tmp_path)
    r = replace(review(), approvals=(Vote("bob", 1001.5, "looks fine"),))
    await store.insert_review(r)
    await store.close()

    reopened = SQLiteApprovalStore.in_data_dir(tmp_path)
    assert await reopened.get_review(r.id) == r
    assert await reopened.get_review("r-none") is None
    await reopened.close()


async def test_update_is_compare_and_set_on_the_version(tmp_path: Path) -> None:
    store = SQLiteApprovalStore.in_data_dir(tmp_path)
    r = review()
    await store.insert_review(r)
    approved = replace(r, state=ReviewState.APPROVED, version=1)
    assert await store.update_review(approved)
    # A writer that read version 0 and is late must not overwrite the decision.
    late = replace(r, state=ReviewState.DENIED, version=1)
    assert not await store.update_review(late)
    assert (await store.get_review(r.id)).state is ReviewState.APPROVED  # type: ignore[union-attr]


async def test_lists_filter_by_state_and_requester_newest_first(tmp_path: Path) -> None:
    store = SQLiteApprovalStore.in_data_dir(tmp_path)
    await store.insert_review(review(1))
    await store.insert_review(review(2, requester="carol"))
    await store.insert_review(review(3, state=ReviewState.DENIED))
    pending = await store.list_reviews(states=frozenset({ReviewState.PENDING}))
    assert [r.id for r in pending] == ["r-0002", "r-0001"]
    mine = await store.list_reviews(requester="alice")
    assert [r.id for r in mine] == ["r-0003", "r-0001"]
    assert await store.list_reviews(states=frozenset()) == []
    assert [r.id for r in await store.list_reviews(limit=1)] == ["r-0003"]
    assert await store.count_pending_reviews("alice") == 1


async def test_grant_round_trip_and_approved_listing(tmp_path: Path) -> None:
    store = SQLiteApprovalStore.in_data_dir(tmp_path)
    g = Grant(
        id="g-1",
        requester="alice",
        requester_groups=frozenset({"ai-agents"}),
        target="pg",
        grant="write",
        duration=1800.0,
        reason="incident 42",
        requested_at=500.0,
    )
    await store.insert_grant(g)
    assert await store.count_pending_grants("alice") == 1
    approved = replace(
        g,
        state=GrantState.APPROVED,
        approved_by=Vote("bob", 600.0, "ok"),
        approved_at=600.0,
        expires_at=2400.0,
        version=1,
    )
    assert await store.update_grant(approved)
    assert await store.get_grant("g-1") == approved
    assert await store.approved_grants() == [approved]
    assert await store.list_grants(states=frozenset({GrantState.PENDING})) == []


def test_state_file_is_private(tmp_path: Path) -> None:
    SQLiteApprovalStore.in_data_dir(tmp_path)
    mode = stat.S_IMODE(os.stat(tmp_path / "state.sqlite3").st_mode)
    assert mode & 0o077 == 0


def test_newer_schema_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "state.sqlite3")
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(GatewayError, match="newer than this gateway"):
        SQLiteApprovalStore.in_data_dir(tmp_path)


def test_fingerprint_binds_every_part_of_what_runs() -> None:
    base: dict[str, Any] = {
        "session_id": "s",
        "subject": "a",
        "target": "pg",
        "protocol": "postgres",
        "text": "UPDATE t SET x = $1 WHERE id = 5",
        "params": ("1",),
    }
    fp = fingerprint(**base)
    variants = [
        {"session_id": "s2"},
        {"subject": "b"},
        {"target": "pg2"},
        {"protocol": "mysql"},
        {"text": base["text"] + " -- again"},
        {"params": ("2",)},
        {"params": (1,)},
        {"params": (b"1",)},
        {"params": ("1", None)},
    ]
    for change in variants:
        assert fingerprint(**{**base, **change}) != fp, change
    assert fingerprint(**base) == fp
