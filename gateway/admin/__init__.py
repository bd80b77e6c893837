"""The admin listener: the approvers' HTTPS JSON API (h11 over the gateway's TLS)."""

from __future__ import annotations

from gateway.admin.api import AdminServer
from gateway.admin.http import HTTPConnection, HTTPError, Request

__all__ = ["AdminServer", "HTTPConnection", "HTTPError", "Request"]
