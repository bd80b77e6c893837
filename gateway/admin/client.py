"""A small synchronous client of the admin API (stdlib ``http.client`` + ``ssl``), for the CLI.

It verifies the server certificate against the CA file it is given (the gateway's own
certificate, for the self-signed default) and the host name, like ``curl --cacert`` would.
"""

from __future__ import annotations

import http.client
import json
import ssl
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

MAX_RESPONSE_BYTES = 16 * 1024 * 1024
MAX_EVENT_BYTES = 1024 * 1024


class AdminAPIError(Exception):
    """The API refused (4xx/5xx) or could not be reached; the message is one line for people."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code


class AdminClient:
    def __init__(
        self, url: str, token: str, *, ca_file: str | None = None, timeout: float = 30.0
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise AdminAPIError(f"the admin API URL must be https://HOST:PORT; got {url!r}")
        self.host = parts.hostname
        self.port = parts.port or 443
        self.token = token
        self.timeout = timeout
        self.context = ssl.create_default_context(cafile=ca_file)

    def _connection(self, timeout: float | None) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(
            self.host, self.port, context=self.context, timeout=timeout
        )

    def _headers(self, body: bytes | None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        return headers

    def request(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        body = json.dumps(payload).encode("utf-8") if payload is not None else None
        conn = self._connection(self.timeout)
        try:
            conn.request(method, path, body=body, headers=self._headers(body))
            response = conn.getresponse()
            data = response.read(MAX_RESPONSE_BYTES + 1)
        except ssl.SSLCertVerificationError as exc:
            raise AdminAPIError(
                f"cannot trust the admin API at {self.host}:{self.port}: {exc.verify_message}; "
                "pass --ca-file (the gateway's certificate) or -c DIR"
            ) from exc
        except (OSError, http.client.HTTPException) as exc:
            raise AdminAPIError(
                f"cannot reach the admin API at {self.host}:{self.port}: {exc}"
            ) from exc
        finally:
            conn.close()
        if len(data) > MAX_RESPONSE_BYTES:
            raise AdminAPIError("the admin API sent an oversized response")
        try:
            decoded = json.loads(data) if data else None
        except ValueError:
            raise AdminAPIError(
                f"the admin API answered {response.status} with a non-JSON body"
            ) from None
        if response.status >= 400:
            error = decoded.get("error", {}) if isinstance(decoded, dict) else {}
            message = error.get("message") or response.reason
            raise AdminAPIError(
                " ".join(str(message).split()),  # one line, whatever the server sent
                status=response.status,
                code=error.get("code"),
            )
        return decoded

    def events(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """(kind, item) from the server-sent event stream, until it ends."""
        conn = self._connection(None)
        try:
            conn.request("GET", "/v1/events", headers=self._headers(None))
            response = conn.getresponse()
            if response.status != 200:
                data = response.read(MAX_RESPONSE_BYTES)
                raise AdminAPIError(f"the event stream was refused ({response.status}): "
                                    f"{data[:200].decode('utf-8', 'replace')}")  # fmt: skip
            kind, lines = "message", list[str]()
            while True:
                line = response.readline(MAX_EVENT_BYTES)
                if not line:
                    return
                text = line.decode("utf-8").rstrip("\r\n")
                if text == "":
                    if lines:
                        yield kind, json.loads("\n".join(lines))
                    kind, lines = "message", list[str]()
                elif text.startswith("event:"):
                    kind = text[6:].strip()
                elif text.startswith("data:"):
                    lines.append(text[5:].strip())
        except (OSError, http.client.HTTPException) as exc:
            raise AdminAPIError(f"the event stream ended: {exc}") from exc
        finally:
            conn.close()
