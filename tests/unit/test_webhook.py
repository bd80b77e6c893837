"""The webhook plugin, delivering to a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from gateway.approvals import ApprovalService, Review, SQLiteApprovalStore
from gateway.config import ApprovalsConfig, load_config
from gateway.errors import PluginError
from gateway.model import Identity
from gateway.plugins import PluginHost
from plugins import webhook
from plugins.webhook import WebhookNotifier, parse_settings, review_message


class Receiver:
    """A stdlib HTTP server that records POSTs and answers with scripted statuses."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.statuses: list[int] = []  # answers to give, in order; then 200
        self.attempts = 0
        self.arrived = threading.Condition()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                with receiver.arrived:
                    receiver.attempts += 1
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                    if status == 200:
                        receiver.bodies.append(json.loads(body))
                        receiver.headers.append(dict(self.headers))
                    receiver.arrived.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/T000/secret"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        with self.arrived:
            while len(self.bodies) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"received {len(self.bodies)} of {count} notifications")
                self.arrived.wait(left)
            return list(self.bodies)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


REVIEW = {
    "id": "r-0123456789",
    "identity": "alice",
    "target": "pg-prod",
    "protocol": "postgres",
    "command": "DELETE FROM t WHERE note = '<!channel>'",
    "command_display": "DELETE FROM t WHERE note = '<!channel>'",
    "params": [],
    "rule": "deletes need review",
    "reason": "a person approves deletes",
    "min_approvals": 1,
    "approver_groups": ["dba"],
    "expires_at": "2030-01-01T00:00:00Z",
    "approve_command": "wardgate review approve r-0123456789 --reason '...'",
    "deny_command": "wardgate review deny r-0123456789 --reason '...'",
}


def test_review_notification_reaches_the_receiver(receiver: Receiver) -> None:
    settings = parse_settings({"urls": [receiver.url], "headers": {"X-Team": "db"}}, file=None)
    assert settings is not None
    notifier = WebhookNotifier(settings)
    assert notifier.submit(review_message(REVIEW))
    (body,) = receiver.wait_for(1)
    notifier.close()
    assert (body["event"], body["id"], body["identity"], body["target"]) == (
        "review_requested",
        "r-0123456789",
        "alice",
        "pg-prod",
    )
    assert body["command"] == REVIEW["command"]
    assert body["approve_command"] == REVIEW["approve_command"]
    # Slack-compatible text, with mrkdwn escaped so a statement cannot ping or link.
    assert "r-0123456789" in body["text"] and "wardgate review approve" in body["text"]
    assert "&lt;!channel&gt;" in body["text"] and "<!channel>" not in body["text"]
    assert receiver.headers[0]["Content-Type"] == "application/json"
    assert receiver.headers[0]["X-Team"] == "db"


def test_failed_deliveries_are_retried(receiver: Receiver) -> None:
    receiver.statuses = [503, 500]
    settings = parse_settings(
        {"urls": [receiver.url], "retries": 3, "retry_delay": 0.01}, file=None
    )
    assert settings is not None
    notifier = WebhookNotifier(settings)
    notifier.submit(review_message(REVIEW))
    receiver.wait_for(1)
    notifier.close()
    assert receiver.attempts == 3 and notifier.delivered == 1


def test_a_rejected_message_is_not_retried(receiver: Receiver) -> None:
    receiver.statuses = [400]
    settings = parse_settings(
        {"urls": [receiver.url], "retries": 3, "retry_delay": 0.01}, file=None
    )
    assert settings is not None
    notifier = WebhookNotifier(settings)
    notifier.submit(review_message(REVIEW))
    notifier.submit(review_message({**REVIEW, "id": "r-second0000"}))
    (body,) = receiver.wait_for(1)
    notifier.close()
    assert body["id"] == "r-second0000"  # the first was given up after one 400
    assert receiver.attempts == 2 and notifier.failed == 1


def test_queue_is_bounded_and_submitting_never_blocks(receiver: Receiver) -> None:
    settings = parse_settings({"urls": [receiver.url], "queue_size": 2}, file=None)
    assert settings is not None
    notifier = WebhookNotifier(settings, start=False)  # a stalled worker, as when receivers hang
    accepted = [notifier.submit(review_message({**REVIEW, "id": f"r-{i:010d}"})) for i in range(5)]
    assert accepted == [True, True, False, False, False]
    assert notifier.dropped == 3
    notifier.start()
    assert [b["id"] for b in receiver.wait_for(2)] == ["r-0000000000", "r-0000000001"]
    notifier.close()


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({}, "[plugins.webhook] urls: expected a non-empty array"),
        ({"urls": ["ftp://x/y"]}, "expected http:// or https:// URLs"),
        ({"urls": ["https://x/y"], "retry": 1}, "[plugins.webhook] retry: unknown key"),
        ({"urls": ["https://x/y"], "retries": -1}, "retries: expected an integer >= 0"),
        ({"urls": ["https://x/y"], "timeout": 0}, "timeout: expected a positive number"),
        ({"urls": ["https://x/y"], "headers": {"X": "a\r\nInjected: 1"}}, "headers: expected"),
    ],
)
def test_bad_settings_name_the_key(table: dict[str, Any], message: str) -> None:
    with pytest.raises(PluginError) as info:
        parse_settings(table, file="conf.d/70-webhook.toml")
    assert str(info.value).startswith("conf.d/70-webhook.toml: [plugins.webhook]")
    assert message in str(info.value)


async def test_plugin_loaded_by_entry_point_notifies_held_commands(
    tmp_path: Path, receiver: Receiver
) -> None:
    conf = tmp_path / "conf.d"
    conf.mkdir()
    (conf / "70-webhook.toml").write_text(
        f'[plugins.webhook]\nurls = ["{receiver.url}"]\nretry_delay = 0.01\n'
    )
    host = PluginHost()
    host.load_entry_points()
    assert host.pm.has_plugin("webhook")
    host.configure(load_config(conf))
    notifier = webhook.current_notifier()
    assert notifier is not None

    service = ApprovalService(
        SQLiteApprovalStore.in_data_dir(tmp_path),
        ApprovalsConfig(approver_groups=frozenset({"dba"})),
        plugins=host,
    )
    alice = Identity("alice", frozenset({"ai-agents"}), expires_at=4e9, issuer="t")
    created: list[Review] = []

    async def on_created(review: Review) -> None:
        created.append(review)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: service.hold(
                session_id="s",
                identity=alice,
                target="pg-prod",
                protocol="postgres",
                text="DELETE FROM t",
                rule="policy.default",
                reason="held",
                on_created=on_created,
            )
        )
        await trio.testing.wait_all_tasks_blocked()
        grant = await service.request_grant(alice, "pg-prod", "write", 600, "incident 7")
        bodies = await trio.to_thread.run_sync(receiver.wait_for, 2)
        nursery.cancel_scope.cancel()
    assert [b["event"] for b in bodies] == ["review_requested", "grant_requested"]
    assert bodies[0]["id"] == created[0].id and bodies[0]["identity"] == "alice"
    assert bodies[1]["id"] == grant.id and bodies[1]["grant"] == "write"

    # Without a [plugins.webhook] table the plugin does nothing.
    empty = tmp_path / "empty.d"
    empty.mkdir()
    (empty / "10.toml").write_text("[gateway]\n")
    host.configure(load_config(empty))
    assert webhook.current_notifier() is None


def test_bad_webhook_configuration_stops_start_up(tmp_path: Path) -> None:
    conf = tmp_path / "conf.d"
    conf.mkdir()
    (conf / "70-webhook.toml").write_text('[plugins.webhook]\nurls = "https://x"\n')
    host = PluginHost()
    host.load_entry_points()
    with pytest.raises(PluginError, match=r"70-webhook.toml: \[plugins.webhook\] urls"):
        host.configure(load_config(conf))
