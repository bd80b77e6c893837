"""``wardgate review ...`` and ``wardgate access ...``: the approvers' and requesters' CLI.

They talk to the admin API of a running gateway. Where it is and which certificate to trust come
from the configuration (``-c DIR``: ``[admin] bind`` and the gateway's certificate) unless
``--url``/``--ca-file`` say otherwise; the caller's token from ``--token`` or ``$WARDGATE_TOKEN``.
A refusal (self-approval, not an approver, already decided, ...) exits 1 with the reason on one
line of stderr; a problem reaching the API exits 2.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import socket
import ssl
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from gateway.admin.client import AdminAPIError, AdminClient
from gateway.errors import GatewayError, one_line

TOKEN_ENV_VAR = "WARDGATE_TOKEN"
EXIT_REFUSED = 1
EXIT_ERROR = 2


def add_parsers(
    sub: argparse._SubParsersAction[Any],
    parse_duration: Callable[[str], float],
) -> None:
    connection = argparse.ArgumentParser(add_help=False)
    connection.add_argument("--token", help=f"your token (default: ${TOKEN_ENV_VAR})")
    connection.add_argument("--url", help="admin API, https://HOST:PORT (default: from -c DIR)")
    connection.add_argument("--ca-file", help="CA/certificate to trust (default: from -c DIR)")
    listing = argparse.ArgumentParser(add_help=False)
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.add_argument("--limit", type=int, default=100, help="at most this many (100)")

    p = sub.add_parser("review", help="held commands: list, show, approve, deny")
    rsub = p.add_subparsers(dest="review_command", required=True)
    r = rsub.add_parser("list", parents=[connection, listing], help="reviews you may see")
    r.add_argument("--state", default="pending",
                   help="pending (default), approved, denied, timed_out, cancelled, a comma list, "
                        "or all")  # fmt: skip
    r.set_defaults(func=_review_list)
    r = rsub.add_parser("show", parents=[connection], help="one review in full")
    r.add_argument("id")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=_review_show)
    for verb in ("approve", "deny"):
        r = rsub.add_parser(verb, parents=[connection], help=f"{verb} a held command")
        r.add_argument("id")
        r.add_argument("--reason", default="", help="why (recorded in the session recording)")
        r.set_defaults(func=_decide, kind="reviews", verb=verb)
    r = rsub.add_parser(
        "watch",
        parents=[connection],
        help="print review and grant events as they happen (JSON lines)",
    )
    r.set_defaults(func=_watch)

    p = sub.add_parser("access", help="time-boxed grants: request, list, approve, deny, revoke")
    asub = p.add_subparsers(dest="access_command", required=True)
    a = asub.add_parser("request", parents=[connection], help="ask for a grant on a target")
    a.add_argument("--target", required=True)
    a.add_argument("--grant", required=True, help='the grant rules test, e.g. "write"')
    a.add_argument("--for", dest="duration", required=True, type=parse_duration,
                   help="how long, from approval (30m, 2h)")  # fmt: skip
    a.add_argument("--reason", required=True)
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=_access_request)
    a = asub.add_parser("list", parents=[connection, listing], help="grants you may see")
    a.add_argument(
        "--state",
        default="all",
        help="pending, approved, denied, revoked, expired, a comma list, or all",
    )
    a.set_defaults(func=_access_list)
    a = asub.add_parser("show", parents=[connection], help="one grant in full")
    a.add_argument("id")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=_access_show)
    for verb in ("approve", "deny", "revoke"):
        a = asub.add_parser(verb, parents=[connection], help=f"{verb} a grant")
        a.add_argument("id")
        a.add_argument("--reason", default="")
        a.set_defaults(func=_decide, kind="grants", verb=verb)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where the admin API is, which certificate is trusted, and where that came from."""

    url: str
    ca_file: str | None
    source: str  # "--url" or "[admin] bind in FILE", for messages


def run(func: Callable[[argparse.Namespace, AdminClient], int], args: argparse.Namespace) -> int:
    """Build the client, run one command, turn failures into an exit status and one line."""
    endpoint = _endpoint(args)
    try:
        client = AdminClient(endpoint.url, _token(args), ca_file=endpoint.ca_file)
    except OSError as exc:  # ssl.SSLError: OpenSSL refused the CA file our PEM check accepted
        raise GatewayError(f"cannot trust certificates from {endpoint.ca_file}: {exc}") from exc
    except AdminAPIError as exc:
        raise GatewayError(f"{exc} ({endpoint.source})") from exc
    try:
        return func(args, client)
    except AdminAPIError as exc:
        refused = exc.status is not None and 400 <= exc.status < 500
        if refused:
            hint = _NOT_FOUND_HINT.get(args.command, "") if exc.code == "not_found" else ""
            print(f"wardgate: refused: {one_line(str(exc))}{hint}", file=sys.stderr)
            return EXIT_REFUSED
        cause = exc.__cause__
        if exc.status is None and isinstance(cause, (OSError, http.client.HTTPException)):
            message = unreachable(endpoint, cause)
        elif exc.status is None:  # it answered, but not as the API does
            message = (
                f"{exc} ({endpoint.url}); is the wardgate admin API there? check {endpoint.source}"
            )
        else:
            message = str(exc)
        print(f"wardgate: error: {one_line(message)}", file=sys.stderr)
        return EXIT_ERROR
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:  # an event stream not of the API
        print(f"wardgate: error: {endpoint.url} does not answer as the wardgate admin API "
              f"({exc}); check {endpoint.source}", file=sys.stderr)  # fmt: skip
        return EXIT_ERROR


_NOT_FOUND_HINT = {
    "review": "; `wardgate review list --state all` shows the reviews you may see",
    "access": "; `wardgate access list` shows the grants you may see",
}


def unreachable(endpoint: Endpoint, cause: BaseException) -> str:
    """Why the API at ``endpoint`` could not be used, and what to check: one line."""
    url = endpoint.url
    if endpoint.source == "--url":
        running = "is `wardgate serve` running, and does its [admin] bind match --url?"
    else:
        running = f"is `wardgate serve` running with this configuration ({endpoint.source})?"
    if isinstance(cause, ssl.SSLCertVerificationError):
        trusted = endpoint.ca_file or "the system's CAs"
        return (
            f"cannot trust the admin API at {url}: {cause.verify_message} (checked against "
            f"{trusted}); pass --ca-file with that gateway's certificate ([tls] cert_file, or "
            "<data_dir>/tls/gateway.crt), or -c DIR of that gateway"
        )
    if isinstance(cause, ssl.SSLError):
        reason = (cause.reason or str(cause)).lower().replace("_", " ")
        return (
            f"TLS with {url} failed ({reason}): something other than the wardgate admin API "
            f"answers there; {running}"
        )
    if isinstance(cause, ConnectionRefusedError):
        return f"cannot reach the admin API at {url}: connection refused; {running}"
    if isinstance(cause, socket.gaierror):
        return (
            f"cannot reach the admin API at {url}: the host name does not resolve "
            f"({cause.strerror}); check {endpoint.source}"
        )
    if isinstance(cause, TimeoutError):
        return f"the admin API at {url} did not answer in time; {running}"
    if isinstance(cause, http.client.HTTPException):
        kind = type(cause).__name__
        return f"{url} does not answer as the wardgate admin API ({kind}); {running}"
    reason = cause.strerror if isinstance(cause, OSError) and cause.strerror else str(cause)
    return f"cannot reach the admin API at {url}: {reason.lower()}; {running}"


# --- finding the API ---------------------------------------------------------------------------


def _token(args: argparse.Namespace) -> str:
    token = (args.token or os.environ.get(TOKEN_ENV_VAR, "")).strip()
    if not token:
        raise GatewayError(
            f"no token: pass --token or set {TOKEN_ENV_VAR} "
            "(with the embedded issuer: wardgate token --sub you --groups ...)"
        )
    return token


def _endpoint(args: argparse.Namespace) -> Endpoint:
    _token(args)  # no token is the first thing to say, before the configuration is read
    if args.url is not None:
        found = Endpoint(args.url, None, "--url")
    else:
        found = _from_config(args)
    ca_file = args.ca_file or found.ca_file
    if ca_file is not None:
        _check_ca_file(ca_file, "--ca-file" if args.ca_file else found.source)
    return Endpoint(found.url, ca_file, found.source)


def _check_ca_file(path: str, source: str) -> None:
    from gateway.certs import PEMFileError, read_pem_certificates

    try:
        read_pem_certificates(Path(path))
    except PEMFileError as exc:
        raise GatewayError(
            f"{source}: {exc}; pass --ca-file with the gateway's PEM certificate"
        ) from None


def _from_config(args: argparse.Namespace) -> Endpoint:
    from gateway.certs import CERT_NAME
    from gateway.config import load_config, resolve_config_dir

    config = load_config(resolve_config_dir(args.config, os.environ))
    if config.admin is None:
        raise GatewayError(
            f"{config.config_dir}: no [admin] table, so the gateway serves no admin API; "
            'add [admin] bind = "127.0.0.1:8443", or pass --url'
        )
    origin = config.origin("admin", "bind")
    source = "[admin] bind" + (f" in {origin}" if origin else "")
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(config.admin.host, config.admin.host)
    if config.admin.port == 0:
        raise GatewayError(f"{source} has port 0 (chosen at start-up); pass --url")
    shown = f"[{host}]" if ":" in host else host
    cert = config.tls.cert_file or (config.data_dir / "tls" / CERT_NAME)
    ca_file = str(cert) if Path(cert).is_file() else None
    return Endpoint(f"https://{shown}:{config.admin.port}", ca_file, source)


# --- ids -----------------------------------------------------------------------------------------

# Review and grant ids are "r-"/"g-" and hex (gateway/approvals/models.py); the admin API takes
# [A-Za-z0-9-]{1,64}. Checked here so that a typo, or a grant id given to `review`, says so.
_ID = re.compile(r"[A-Za-z0-9-]{1,64}")
_ID_KINDS = {"reviews": ("r-", "review", "review list --state all"),
             "grants": ("g-", "grant", "access list")}  # fmt: skip


def _item_id(value: str, kind: str) -> str:
    prefix, noun, lister = _ID_KINDS[kind]
    value = value.strip()
    if _ID.fullmatch(value):
        if value.startswith(prefix):
            return value
        for other_prefix, other_noun, other_lister in _ID_KINDS.values():
            if other_prefix != prefix and value.startswith(other_prefix):
                raise GatewayError(
                    f"{value} is a {other_noun} id, not a {noun} id; "
                    f"`wardgate {other_lister.split()[0]} ...` handles {other_noun}s"
                )
    raise GatewayError(
        f"not a {noun} id: {value!r}; {noun} ids look like {prefix}0a1b2c3d4e "
        f"(`wardgate {lister}` shows them)"
    )


def _states(value: str) -> str:
    """``--state "pending, approved"`` -> the query part: trimmed, empty entries dropped."""
    words = list(dict.fromkeys(w.strip() for w in value.split(",") if w.strip()))
    if not words or words == ["all"]:
        return ""
    return f"state={quote(','.join(words), safe=',')}&"


# --- commands ----------------------------------------------------------------------------------


def _review_list(args: argparse.Namespace, client: AdminClient) -> int:
    path = f"/v1/reviews?{_states(args.state)}limit={args.limit}"
    reviews = client.request("GET", path)["reviews"]
    for review in reviews:
        if args.json:
            print(json.dumps(review, ensure_ascii=True))
        else:
            votes = f"{len(review['approvals'])}/{review['min_approvals']}"
            print(f"{review['id']}  {review['state']:9} {votes:4} {review['identity']:16} "
                  f"{review['target']:14} {_one_line(review['command_display'])}")  # fmt: skip
    if not reviews and not args.json:
        print("no reviews", file=sys.stderr)
    return 0


def _review_show(args: argparse.Namespace, client: AdminClient) -> int:
    review = client.request("GET", f"/v1/reviews/{_item_id(args.id, 'reviews')}")
    if args.json:
        print(json.dumps(review, ensure_ascii=True))
        return 0
    for key in ("id", "state", "identity", "target", "protocol", "session", "rule", "reason",
                "created_at", "expires_at", "decided_at"):  # fmt: skip
        print(f"{key + ':':12} {review[key] if review[key] is not None else '-'}")
    print(f"{'approvals:':12} {len(review['approvals'])} of {review['min_approvals']} needed "
          f"(approvers: {', '.join(review['approver_groups']) or 'none configured'})")  # fmt: skip
    for vote in review["approvals"]:
        print(f"{'':12} {vote['approver']} at {vote['at']}: {vote['reason'] or '-'}")
    if review["denial"]:
        d = review["denial"]
        print(f"{'denied:':12} by {d['approver']} at {d['at']}: {d['reason'] or '-'}")
    print("command:")
    for line in review["command_display"].splitlines() or [""]:
        print(f"    {line}")
    if review["params"]:
        print(f"params:      {json.dumps(review['params'], ensure_ascii=True)}")
    return 0


def _decide(args: argparse.Namespace, client: AdminClient) -> int:
    path = f"/v1/{args.kind}/{_item_id(args.id, args.kind)}/{args.verb}"
    item = client.request("POST", path, {"reason": args.reason})
    what = "review" if args.kind == "reviews" else "grant"
    extra = ""
    if args.kind == "reviews" and item["state"] == "pending":
        extra = f" ({len(item['approvals'])} of {item['min_approvals']} approvals)"
    elif args.kind == "grants" and item["state"] == "approved":
        extra = f" until {item['expires_at']}"
    print(f"{what} {item['id']}: {item['state']}{extra}")
    return 0


def _watch(args: argparse.Namespace, client: AdminClient) -> int:
    started = False
    try:
        for kind, item in client.events():
            started = True
            print(json.dumps({"event": kind, **item}, ensure_ascii=True), flush=True)
    except AdminAPIError as exc:
        if not started:
            raise  # never connected: run() says why the API cannot be reached
        print(f"wardgate: error: {exc} (did the gateway stop?); run the command again to "
              "resume", file=sys.stderr)  # fmt: skip
        return EXIT_ERROR
    return 0


def _access_request(args: argparse.Namespace, client: AdminClient) -> int:
    grant = client.request("POST", "/v1/grants", {
        "target": args.target, "grant": args.grant, "duration": args.duration,
        "reason": args.reason,
    })  # fmt: skip
    if args.json:
        print(json.dumps(grant, ensure_ascii=True))
    else:
        print(f"grant {grant['id']}: {grant['state']} ({grant['command']} on {grant['target']}); "
              f"an approver runs: wardgate access approve {grant['id']}")  # fmt: skip
    return 0


def _access_list(args: argparse.Namespace, client: AdminClient) -> int:
    grants = client.request("GET", f"/v1/grants?{_states(args.state)}limit={args.limit}")["grants"]
    for grant in grants:
        if args.json:
            print(json.dumps(grant, ensure_ascii=True))
        else:
            until = grant["expires_at"] or "-"
            print(f"{grant['id']}  {grant['state']:8} {grant['identity']:16} {grant['target']:14} "
                  f"{grant['command']:24} until {until}")  # fmt: skip
    if not grants and not args.json:
        print("no grants", file=sys.stderr)
    return 0


def _access_show(args: argparse.Namespace, client: AdminClient) -> int:
    grant = client.request("GET", f"/v1/grants/{_item_id(args.id, 'grants')}")
    if args.json:
        print(json.dumps(grant, ensure_ascii=True))
        return 0
    for key, value in grant.items():
        if isinstance(value, dict):
            value = f"{value['approver']} at {value['at']}: {value['reason'] or '-'}"
        print(f"{key + ':':16} {value if value is not None else '-'}")
    return 0


def _one_line(text: str, width: int = 80) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"
