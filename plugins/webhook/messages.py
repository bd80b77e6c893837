"""What a notification says: Slack-compatible ``text`` plus the structured fields."""

from __future__ import annotations

from typing import Any

MAX_COMMAND_CHARS = 1500


def _slack_escape(text: str) -> str:
    # Slack's mrkdwn needs these three escaped; it also means no "<url|click here>" links can be
    # smuggled into the message through a statement's text.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str) -> str:
    if len(text) <= MAX_COMMAND_CHARS:
        return text
    return text[:MAX_COMMAND_CHARS] + f"… ({len(text) - MAX_COMMAND_CHARS} more characters)"


def review_message(review: dict[str, Any]) -> dict[str, Any]:
    command = _clip(str(review.get("command_display", review.get("command", ""))))
    approvers = ", ".join(review.get("approver_groups", [])) or "nobody (configure approvers)"
    needed = review.get("min_approvals", 1)
    text = (
        f"*wardgate: review {review['id']}* — {review['identity']} wants to run on "
        f"`{review['target']}` ({review.get('protocol', '')}):\n"
        f"```{_slack_escape(command)}```\n"
        f"Held by rule “{_slack_escape(str(review.get('rule', '')))}”: "
        f"{_slack_escape(str(review.get('reason', '')))}\n"
        f"Needs {needed} approval(s) from: {approvers}. Expires {review.get('expires_at')}.\n"
        f"Approve: `{review.get('approve_command')}`\n"
        f"Deny: `{review.get('deny_command')}`"
    )
    return {
        "text": text,
        "event": "review_requested",
        "id": review["id"],
        "identity": review["identity"],
        "target": review["target"],
        "command": review.get("command"),
        "reason": review.get("reason"),
        "approve_command": review.get("approve_command"),
        "deny_command": review.get("deny_command"),
        "review": review,
    }


def grant_message(grant: dict[str, Any]) -> dict[str, Any]:
    text = (
        f"*wardgate: access request {grant['id']}* — {grant['identity']} asks for "
        f"`{grant['grant']}` on `{grant['target']}` ({grant.get('command', '')}):\n"
        f"> {_slack_escape(str(grant.get('reason', '')))}\n"
        f"Approve: `{grant.get('approve_command')}`\n"
        f"Deny: `{grant.get('deny_command')}`"
    )
    return {
        "text": text,
        "event": "grant_requested",
        "id": grant["id"],
        "identity": grant["identity"],
        "target": grant["target"],
        "grant": grant["grant"],
        "duration": grant.get("duration"),
        "reason": grant.get("reason"),
        "approve_command": grant.get("approve_command"),
        "deny_command": grant.get("deny_command"),
        "access_request": grant,
    }
