"""The webhook notifier: tells approvers that a command waits or access is asked for.

Configure it in the gateway's configuration::

    [plugins.webhook]
    urls = ["https://hooks.slack.com/services/..."]   # any receiver of JSON POSTs
    timeout = 5        # seconds per attempt
    retries = 3        # after a failure (network, 408, 429, 5xx), with doubling delays
    retry_delay = 1.0
    queue_size = 100   # waiting notifications; beyond it new ones are dropped and logged

Each notification is a JSON object with a Slack-compatible ``text`` and structured fields
(``event``, ``id``, ``identity``, ``target``, ``command``, ``reason``, ``approve_command``, ...).
Registered through the ``wardgate`` entry-point group, like any third-party plugin.
"""

from __future__ import annotations

import atexit
import logging
from typing import TYPE_CHECKING, Any

from gateway.hookspecs import hookimpl
from plugins.webhook.messages import grant_message, review_message
from plugins.webhook.notifier import WebhookNotifier
from plugins.webhook.settings import WebhookSettings, parse_settings

if TYPE_CHECKING:
    from gateway.config import Config

__all__ = ["WebhookNotifier", "WebhookSettings", "current_notifier", "grant_message",
           "parse_settings", "review_message"]  # fmt: skip

log = logging.getLogger("wardgate.webhook")

_notifier: WebhookNotifier | None = None


def current_notifier() -> WebhookNotifier | None:
    return _notifier


@hookimpl
def wardgate_configure(config: Config) -> None:
    global _notifier
    settings = parse_settings(
        config.plugins.get("webhook"),
        file=config.origin("plugins", "webhook"),
        base=config.config_dir.parent,
    )
    if _notifier is not None:
        _notifier.close(timeout=1.0)
    _notifier = WebhookNotifier(settings) if settings is not None else None
    if settings is not None:
        log.info("webhook notifications to %d URL(s)", len(settings.urls))


@hookimpl
def wardgate_review_requested(review: dict[str, Any]) -> None:
    if _notifier is not None:
        _notifier.submit(review_message(review))


@hookimpl
def wardgate_grant_requested(grant: dict[str, Any]) -> None:
    if _notifier is not None:
        _notifier.submit(grant_message(grant))


@atexit.register
def _drain_at_exit() -> None:
    # A notification queued just before shutdown still deserves a few seconds to be delivered.
    if _notifier is not None:
        _notifier.close(timeout=5.0)
