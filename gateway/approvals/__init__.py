"""Just-in-time approval: commands held for review, and time-boxed grants.

``ApprovalService`` is the API (sessions hold commands through it, the admin API decides);
``SQLiteApprovalStore`` is the embedded store behind the ``ApprovalStore`` interface.
"""

from __future__ import annotations

from gateway.approvals.events import ApprovalEvent
from gateway.approvals.models import (
    ApprovalRefused,
    Conflict,
    Grant,
    GrantState,
    NotApproverRefused,
    NotFound,
    PendingCapRefused,
    Review,
    ReviewState,
    SelfApprovalRefused,
    Vote,
    display_text,
    fingerprint,
)
from gateway.approvals.service import ApprovalService, RecoveryReport
from gateway.approvals.store import STATE_FILE, ApprovalStore, SQLiteApprovalStore

__all__ = [
    "STATE_FILE",
    "ApprovalEvent",
    "ApprovalRefused",
    "ApprovalService",
    "ApprovalStore",
    "Conflict",
    "Grant",
    "GrantState",
    "NotApproverRefused",
    "NotFound",
    "PendingCapRefused",
    "RecoveryReport",
    "Review",
    "ReviewState",
    "SQLiteApprovalStore",
    "SelfApprovalRefused",
    "Vote",
    "display_text",
    "fingerprint",
]
