"""What approvals are made of: reviews of held commands, grants of time-boxed access, and votes.

The values are frozen: a decision produces a new value (``dataclasses.replace``) with a bumped
``version``, which is what a store compares before it writes (optimistic concurrency), so two
approvers, or two gateway instances sharing a store, can never both move one review out of
``pending``.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import json
import secrets
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


class ApprovalRefused(Exception):
    """An approver's or requester's action was refused; the message is safe to show them.

    ``code`` is a stable machine-readable word (``self_approval``, ``not_approver``, ...) and
    ``http_status`` the status the admin API answers with, in the manner of h11's
    ``error_status_hint``.
    """

    code = "refused"
    http_status = 403

    def __init__(self, message: str, *, code: str | None = None, http_status: int | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code
        if http_status is not None:
            self.http_status = http_status


class SelfApprovalRefused(ApprovalRefused):
    code = "self_approval"


class NotApproverRefused(ApprovalRefused):
    code = "not_approver"


class NotFound(ApprovalRefused):
    code = "not_found"
    http_status = 404


class Conflict(ApprovalRefused):
    """The review or grant is no longer in a state that allows the action."""

    code = "conflict"
    http_status = 409


class PendingCapRefused(ApprovalRefused):
    code = "too_many_pending"
    http_status = 429


class ReviewState(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"


class GrantState(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"  # active until expires_at
    DENIED = "denied"
    REVOKED = "revoked"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class Vote:
    """One approver's approval or denial."""

    subject: str
    at: float  # unix seconds
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"approver": self.subject, "at": iso(self.at), "reason": self.reason}


@dataclass(frozen=True, slots=True)
class Review:
    """A command held until people approve it. ``id`` is what approvers type (``r-…``)."""

    id: str
    fingerprint: str
    session_id: str
    requester: str  # the identity's subject
    requester_groups: frozenset[str]
    target: str
    protocol: str
    command: str  # the exact statement text, as it will run
    params: tuple[Any, ...]
    kinds: frozenset[str]
    rule: str
    reason: str  # why the rule holds it
    min_approvals: int
    approver_groups: frozenset[str]
    created_at: float
    expires_at: float  # when it times out if nobody decides
    state: ReviewState = ReviewState.PENDING
    approvals: tuple[Vote, ...] = ()
    denial: Vote | None = None
    decided_at: float | None = None
    consumed_at: float | None = None  # when the one execution it allows was let through
    version: int = 0

    @property
    def pending(self) -> bool:
        return self.state is ReviewState.PENDING

    def approvers(self) -> list[str]:
        return [v.subject for v in self.approvals]

    def to_json(self) -> dict[str, Any]:
        """The admin API's and the notification hook's view (no secrets are held here)."""
        return {
            "id": self.id,
            "type": "review",
            "state": str(self.state),
            "identity": self.requester,
            "identity_groups": sorted(self.requester_groups),
            "session": self.session_id,
            "target": self.target,
            "protocol": self.protocol,
            "command": self.command,
            "command_display": display_text(self.command),
            "params": [jsonable(p) for p in self.params],
            "kinds": sorted(self.kinds),
            "rule": self.rule,
            "reason": self.reason,
            "min_approvals": self.min_approvals,
            "approver_groups": sorted(self.approver_groups),
            "approvals": [v.to_json() for v in self.approvals],
            "denial": self.denial.to_json() if self.denial else None,
            "created_at": iso(self.created_at),
            "expires_at": iso(self.expires_at),
            "decided_at": iso(self.decided_at),
            "consumed_at": iso(self.consumed_at),
        }


@dataclass(frozen=True, slots=True)
class Grant:
    """Elevated access (a named grant) for one identity on one target, for a while."""

    id: str
    requester: str
    requester_groups: frozenset[str]
    target: str
    grant: str  # the name rules test with ``grant = "..."``
    duration: float  # seconds, counted from approval
    reason: str
    requested_at: float
    state: GrantState = GrantState.PENDING
    approved_by: Vote | None = None
    decided_by: Vote | None = None  # who denied or revoked it
    approved_at: float | None = None
    expires_at: float | None = None  # approved_at + duration
    ended_at: float | None = None  # denied, revoked or expired
    version: int = 0

    def active(self, now: float) -> bool:
        return (
            self.state is GrantState.APPROVED
            and self.expires_at is not None
            and now < self.expires_at
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "grant",
            "state": str(self.state),
            "identity": self.requester,
            "identity_groups": sorted(self.requester_groups),
            "target": self.target,
            "grant": self.grant,
            # Lists show every row with a "command"; for a grant it is what is asked for.
            "command": f"grant {self.grant} for {format_duration(self.duration)}",
            "duration": self.duration,
            "reason": self.reason,
            "requested_at": iso(self.requested_at),
            "approved_by": self.approved_by.to_json() if self.approved_by else None,
            "decided_by": self.decided_by.to_json() if self.decided_by else None,
            "approved_at": iso(self.approved_at),
            "expires_at": iso(self.expires_at),
            "ended_at": iso(self.ended_at),
        }


MAX_REASON = 1000


def check_reason(text: str, *, required: bool, what: str = "reason") -> str:
    """A reason typed by a person: bounded, and free of control characters that could forge
    lines in a notification, a log or a terminal."""
    if not isinstance(text, str):
        raise ApprovalRefused(f"{what} must be a string", code="bad_request", http_status=400)
    text = text.strip()
    if required and not text:
        raise ApprovalRefused(f"a {what} is required", code="bad_request", http_status=400)
    if len(text) > MAX_REASON:
        raise ApprovalRefused(
            f"{what} is longer than {MAX_REASON} characters", code="bad_request", http_status=400
        )
    if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in text):
        raise ApprovalRefused(
            f"{what} contains control or format characters", code="bad_request", http_status=400
        )
    return text


def new_review_id() -> str:
    # 40 random bits: short enough to type from a notification, unguessable enough that
    # ids are not a way to enumerate other people's reviews.
    return "r-" + secrets.token_hex(5)


def new_grant_id() -> str:
    return "g-" + secrets.token_hex(5)


def fingerprint(
    *, session_id: str, subject: str, target: str, protocol: str, text: str, params: Sequence[Any]
) -> str:
    """What an approval is bound to: sha256 over an unambiguous encoding of exactly what runs.

    JSON of a list is unambiguous (no field can bleed into the next), and each parameter is
    type-tagged so that the text ``'5'`` and the number ``5``, or ``b"a"`` and ``"a"``, differ.
    """
    material = [
        "wardgate-review-v1",
        session_id,
        subject,
        target,
        protocol,
        text,
        [_tagged(p) for p in params],
    ]
    encoded = json.dumps(material, ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256(encoded.encode("ascii")).hexdigest()


def _tagged(value: Any) -> list[Any]:
    if value is None:
        return ["n"]
    if isinstance(value, bool):
        return ["B", value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return ["b", bytes(value).hex()]
    if isinstance(value, str):
        return ["s", value]
    if isinstance(value, int):
        return ["i", str(value)]
    if isinstance(value, float):
        return ["f", repr(value)]
    return ["r", type(value).__name__, repr(value)]


def jsonable(value: Any, *, readable: bool = True) -> Any:
    """A bound parameter as JSON. Bytes become ``{"base64": ...}``; with ``readable`` (what
    people see) bytes that are UTF-8 are shown as text instead."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        if readable:
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                pass
        return {"base64": base64.b64encode(raw).decode("ascii")}
    return repr(value)


def from_jsonable(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"base64"}:
        return base64.b64decode(value["base64"])
    return value


def display_text(text: str) -> str:
    """The statement as an approver should read it: every code point that could disguise what
    runs (controls, bidi overrides, zero-width and non-ASCII lookalikes) shown as an escape.

    HOSTILE G.43: ``DELETE`` written with a Cyrillic ``Е`` or reordered by U+202E must not look
    like the harmless statement it imitates. Newlines and tabs stay: SQL is written on lines.
    """
    out: list[str] = []
    for ch in text:
        if ch == "\\":
            # Doubled, so that an escape written here is never confused with one typed into
            # the statement.
            out.append("\\\\")
        elif ch in "\n\t" or (" " <= ch <= "~"):
            out.append(ch)
        else:
            code = ord(ch)
            escaped = f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"
            name = unicodedata.name(ch, "")
            out.append(f"{escaped}{{{name}}}" if name else escaped)
    return "".join(out)


def iso(at: float | None) -> str | None:
    if at is None:
        return None
    return datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")


def format_duration(seconds: float) -> str:
    """``1800`` -> ``30m``; the inverse of the CLI's ``--for`` parser for whole units."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
