"""``wardgate review ...`` and ``wardgate access ...``: the approvers' and requesters' CLI.

They talk to the admin API of a running gateway. Where it is and which certificate to trust come
from the configuration (``-c DIR``: ``[admin] bind`` and the gateway's certificate) unless
``--url``/``--ca-file`` say otherwise; the caller's token from ``--token`` or ``$WARDGATE_TOKEN``.
A refusal (self-approval, not an approver, already decided, ...) exits 1 with the reason on one
line of stderr; a problem reaching the API exits 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from gateway.admin.client import AdminAPIError, AdminClient
from gateway.errors import GatewayError

TOKEN_ENV_VAR = "WARDGATE_TOKEN"
EXIT_REFUSED = 1
EXIT_ERROR = 2


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
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


def run(func: Callable[[argparse.Namespace, AdminClient], int], args: argparse.Namespace) -> int:
    """Build the client, run one command, turn failures into an exit status and one line."""
    try:
        client = _client(args)
        return func(args, client)
    except AdminAPIError as exc:
        refused = exc.status is not None and 400 <= exc.status < 500
        label = "refused" if refused else "error"
        print(f"wardgate: {label}: {exc}", file=sys.stderr)
        return EXIT_REFUSED if refused else EXIT_ERROR


# --- finding the API ---------------------------------------------------------------------------


def _client(args: argparse.Namespace) -> AdminClient:
    token = args.token or os.environ.get(TOKEN_ENV_VAR, "")
    if not token.strip():
        raise GatewayError(
            f"no token: pass --token or set {TOKEN_ENV_VAR} "
            "(with the embedded issuer: wardgate token --sub you --groups ...)"
        )
    url, ca_file = args.url, args.ca_file
    if url is None:
        url, found_ca = _from_config(args)
        ca_file = ca_file or found_ca
    return AdminClient(url, token.strip(), ca_file=ca_file)


def _from_config(args: argparse.Namespace) -> tuple[str, str | None]:
    from gateway.certs import CERT_NAME
    from gateway.config import load_config, resolve_config_dir

    config = load_config(resolve_config_dir(args.config, os.environ))
    if config.admin is None:
        raise GatewayError(
            f"{config.config_dir}: no [admin] table, so the gateway serves no admin API; "
            'add [admin] bind = "127.0.0.1:8443", or pass --url'
        )
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(config.admin.host, config.admin.host)
    if config.admin.port == 0:
        raise GatewayError("[admin] bind has port 0 (chosen at start-up); pass --url")
    shown = f"[{host}]" if ":" in host else host
    cert = config.tls.cert_file or (config.data_dir / "tls" / CERT_NAME)
    return f"https://{shown}:{config.admin.port}", str(cert) if Path(cert).is_file() else None


# --- commands ----------------------------------------------------------------------------------


def _states(value: str) -> str:
    return "" if value.strip() == "all" else f"state={quote(value.strip(), safe=',')}&"


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
    review = client.request("GET", f"/v1/reviews/{quote(args.id, safe='')}")
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
    path = f"/v1/{args.kind}/{quote(args.id, safe='')}/{args.verb}"
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
    for kind, item in client.events():
        print(json.dumps({"event": kind, **item}, ensure_ascii=True), flush=True)
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
    grant = client.request("GET", f"/v1/grants/{quote(args.id, safe='')}")
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
