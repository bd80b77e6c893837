"""A session holding a DELETE for approval, as a connector would run it (shared by the admin API
and approvals CLI tests)."""

from __future__ import annotations

import trio

from gateway.model import Category, Command, Decision, Identity, Target
from gateway.runtime import Gateway

TARGET = Target("pg-prod", "postgres", "127.0.0.1", 5432)
ALICE = Identity("alice", frozenset({"ai-agents"}), expires_at=4e9, issuer="test")
DELETE = Command(
    "postgres",
    "DELETE FROM orders WHERE id = $1",
    frozenset({"delete"}),
    frozenset({Category.WRITE}),
)


async def hold_delete(
    gw: Gateway,
    nursery: trio.Nursery,
    identity: Identity,
    params: list[str],
    results: list[Decision],
) -> str:
    """Start a session holding DELETE; returns the review id once it exists. The final decision
    is appended to ``results`` when the review ends."""
    told = trio.Event()
    ids: list[str] = []

    async def session() -> None:
        async with gw.session(identity=identity, target=TARGET, protocol="postgres", peer="t") as s:
            decision = s.authorize(DELETE)

            async def waiting(review_id: str) -> None:
                ids.append(review_id)
                told.set()

            results.append(
                await s.request_approval(
                    DELETE, decision, text=DELETE.text, params=params, on_waiting=waiting
                )
            )

    nursery.start_soon(session)
    await told.wait()
    return ids[0]
