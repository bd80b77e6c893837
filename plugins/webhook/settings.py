"""``[plugins.webhook]``: where to POST notifications, and how hard to try."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gateway.errors import PluginError

KEYS = ("urls", "timeout", "retries", "retry_delay", "queue_size", "ca_file", "headers")


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    urls: tuple[str, ...]
    timeout: float = 5.0  # seconds per delivery attempt
    retries: int = 3  # further attempts after a failed one (network error, 408, 429, 5xx)
    retry_delay: float = 1.0  # seconds before the first retry; doubles each time, at most 60
    queue_size: int = 100  # notifications waiting for delivery; more are dropped and logged
    ca_file: str | None = None  # trust this CA for https URLs (default: the system's)
    headers: Mapping[str, str] = field(default_factory=dict)  # e.g. a receiver's auth header


def parse_settings(
    table: Mapping[str, Any] | None, *, file: str | None, base: Path | None = None
) -> WebhookSettings | None:
    """None when the table is absent (the plugin then does nothing); raises PluginError naming
    the file and key otherwise. A relative ``ca_file`` is resolved against ``base`` (the parent
    of the configuration directory, as the core resolves its own paths)."""
    if table is None:
        return None

    def error(key: str, message: str) -> PluginError:
        where = f"{file}: " if file else ""
        return PluginError(f"{where}[plugins.webhook] {key}: {message}")

    for key in table:
        if key not in KEYS:
            raise error(key, f"unknown key; expected one of {', '.join(KEYS)}")
    urls = table.get("urls")
    if not isinstance(urls, list) or not urls:
        raise error("urls", 'expected a non-empty array of URLs, e.g. ["https://hooks.example/x"]')
    for url in urls:
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise error("urls", f"expected http:// or https:// URLs; got {url!r}")
    headers = table.get("headers", {})
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and "\n" not in v and "\r" not in v
        for k, v in headers.items()
    ):
        raise error("headers", "expected a table of header names to string values")
    ca_file = table.get("ca_file")
    if ca_file is not None:
        path = Path(ca_file).expanduser() if isinstance(ca_file, str) else None
        if path is not None and not path.is_absolute() and base is not None:
            path = base / path
        if path is None or not path.is_file():
            raise error("ca_file", f"file not found: {ca_file!r}")
        ca_file = str(path)
    return WebhookSettings(
        urls=tuple(urls),
        timeout=_seconds(table, "timeout", 5.0, error),
        retries=_count(table, "retries", 3, 0, error),
        retry_delay=_seconds(table, "retry_delay", 1.0, error),
        queue_size=_count(table, "queue_size", 100, 1, error),
        ca_file=ca_file,
        headers=dict(headers),
    )


def _seconds(table: Mapping[str, Any], key: str, default: float, error: Any) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise error(key, f"expected a number of seconds; got {value!r}")
    if not (value > 0 and math.isfinite(value)):
        raise error(key, f"expected a positive number of seconds; got {value!r}")
    return float(value)


def _count(table: Mapping[str, Any], key: str, default: int, minimum: int, error: Any) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise error(key, f"expected an integer >= {minimum}; got {value!r}")
    return value
