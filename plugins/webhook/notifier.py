"""Delivery: a bounded queue drained by one worker thread, with retries and backoff.

Hooks are synchronous and run on the gateway's event loop, so they only enqueue; the HTTP work
happens on the worker thread. The queue is bounded: if receivers are down for long, new
notifications are dropped (and counted, and logged) rather than growing memory without end.
Redirects are not followed: a notification is sent only where the operator pointed it.
"""

from __future__ import annotations

import http.client
import json
import logging
import queue
import ssl
import threading
from typing import Any
from urllib.parse import urlsplit

from plugins.webhook.settings import WebhookSettings

log = logging.getLogger("wardgate.webhook")

MAX_BACKOFF = 60.0
_RETRYABLE = frozenset({408, 425, 429, 500, 502, 503, 504})


class WebhookNotifier:
    def __init__(self, settings: WebhookSettings, *, start: bool = True) -> None:
        self.settings = settings
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=settings.queue_size)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._autostart = start
        self.dropped = 0
        self.delivered = 0
        self.failed = 0
        self._context = ssl.create_default_context(cafile=settings.ca_file)

    def submit(self, message: dict[str, Any]) -> bool:
        """Queue a message for every URL; never blocks. False if the queue was full."""
        try:
            self._queue.put_nowait(message)
        except queue.Full:
            self.dropped += 1
            log.warning("webhook queue full (%d); notification dropped (%d so far)",
                        self.settings.queue_size, self.dropped)  # fmt: skip
            return False
        if self._autostart:
            self.start()
        return True

    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="wardgate-webhook", daemon=True
                )
                self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued for up to ``timeout`` seconds, then stop the worker."""
        thread = self._thread
        if thread is None:
            return
        try:
            self._queue.put(None, timeout=timeout)  # wakes the worker once the queue drains
        except queue.Full:
            pass
        thread.join(timeout)
        self._stop.set()
        thread.join(1.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            message = self._queue.get()
            if message is None:
                return
            body = json.dumps(message, ensure_ascii=True).encode("ascii")
            for url in self.settings.urls:
                if self._deliver(url, body):
                    self.delivered += 1
                else:
                    self.failed += 1

    def _deliver(self, url: str, body: bytes) -> bool:
        delay = self.settings.retry_delay
        for attempt in range(self.settings.retries + 1):
            if attempt:
                if self._stop.wait(delay):
                    return False
                delay = min(delay * 2, MAX_BACKOFF)
            try:
                status = self._post(url, body)
            except (OSError, http.client.HTTPException) as exc:
                log.warning("webhook %s: attempt %d failed: %s", _safe(url), attempt + 1, exc)
                continue
            if 200 <= status < 300:
                return True
            log.warning("webhook %s: attempt %d got HTTP %d", _safe(url), attempt + 1, status)
            if status not in _RETRYABLE:
                return False  # the receiver rejects this message; sending it again won't help
        log.error("webhook %s: giving up after %d attempt(s)", _safe(url),
                  self.settings.retries + 1)  # fmt: skip
        return False

    def _post(self, url: str, body: bytes) -> int:
        parts = urlsplit(url)
        host = parts.hostname or ""
        conn: http.client.HTTPConnection
        if parts.scheme == "https":
            conn = http.client.HTTPSConnection(
                host, parts.port, timeout=self.settings.timeout, context=self._context
            )
        else:
            conn = http.client.HTTPConnection(host, parts.port, timeout=self.settings.timeout)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "wardgate-webhook",
            **self.settings.headers,
        }
        try:
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            response.read(64 * 1024)  # bounded: only the status matters
            return response.status
        finally:
            conn.close()


def _safe(url: str) -> str:
    """A URL for the log without its path: webhook paths (Slack's) are secrets."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/..."
