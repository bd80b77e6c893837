"""The ``wardgate`` command line."""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gateway.errors import GatewayError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``1h``, ``1d`` -> seconds."""
    m = _DURATION.match(text)
    if not m:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (examples: 90s, 15m, 1h)")
    seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if seconds <= 0:
        raise argparse.ArgumentTypeError("a duration must be positive")
    return seconds


def _config(args: argparse.Namespace) -> Any:
    from gateway.config import load_config, resolve_config_dir

    return load_config(resolve_config_dir(args.config, os.environ))


def cmd_serve(args: argparse.Namespace) -> int:
    import trio

    from gateway.config import approval_warnings
    from gateway.runtime import build_gateway
    from gateway.server import serve_until_signalled

    config = _config(args)
    for problem in (*config.problems, *approval_warnings(config)):
        print(f"wardgate: warning: {problem}", file=sys.stderr)
    gw = build_gateway(config)
    print(f"wardgate: config {config.config_dir}, data in {config.data_dir}", flush=True)
    if gw.issuer is not None:
        print("wardgate: embedded issuer; mint a token with: "
              "wardgate token --sub you --groups ai-agents --ttl 15m", flush=True)
    trio.run(serve_until_signalled, gw)
    return 0


def cmd_config_check(args: argparse.Namespace) -> int:
    import trio

    from gateway.config import approval_warnings
    from gateway.runtime import build_gateway

    config = _config(args)
    gw = build_gateway(config)  # loads plugins, detectors, keys: everything start-up would check
    trio.run(gw.aclose)
    for problem in (*config.problems, *approval_warnings(config)):
        print(f"warning: {problem}", file=sys.stderr)
    print(f"{config.config_dir}: ok ({len(config.listeners)} listener(s), "
          f"{len(config.targets)} target(s), {len(config.rules)} rule(s))")
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    from gateway.auth import EmbeddedIssuer

    config = _config(args)
    if config.auth.issuer != "embedded":
        raise GatewayError(
            f"[auth] issuer is {config.auth.issuer!r}: tokens come from that identity provider; "
            "`wardgate token` mints only for the embedded issuer"
        )
    issuer = EmbeddedIssuer.load_or_create(config.data_dir)
    groups = [g for part in args.groups for g in part.split(",") if g]
    token = issuer.mint(
        subject=args.sub, groups=groups, ttl=args.ttl, audience=args.aud or config.auth.audience
    )
    print(token)
    return 0


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return {"base64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _public_key(args: argparse.Namespace) -> Any:
    from gateway.recording import load_public_key

    try:
        config = _config(args)
    except GatewayError:
        return None
    try:
        return load_public_key(config.data_dir)
    except (OSError, ValueError):
        return None


def cmd_recordings_list(args: argparse.Namespace) -> int:
    from gateway.recording import RecordingStore, read_recording

    config = _config(args)
    store = RecordingStore(config.data_dir / "recordings")
    key = _public_key(args)
    for path in store.list():
        rec = read_recording(path, public_key=key)
        h = rec.header
        ident = h.get("identity", {})
        target = h.get("target", {})
        line = {
            "file": str(path),
            "session_id": h.get("session_id"),
            "started": h.get("started_iso"),
            "sub": ident.get("sub"),
            "target": target.get("name") if isinstance(target, dict) else target,
            "protocol": h.get("protocol"),
            "records": len(rec.records),
            "integrity": rec.integrity.status,
        }
        if args.json:
            print(json.dumps(line))
        else:
            print(f"{line['started']}  {line['sub']!s:16} {line['target']!s:16} "
                  f"{line['protocol']!s:9} {line['integrity']:9} {line['file']}")
    return 0


def cmd_recordings_show(args: argparse.Namespace) -> int:
    from gateway.recording import read_recording

    rec = read_recording(Path(args.file), public_key=_public_key(args))
    header = dict(rec.header)
    if isinstance(header.get("target"), dict):
        header["target_detail"] = header["target"]
        header["target"] = header["target"].get("name")
    lines: list[dict[str, Any]] = [{"kind": "header", **_jsonable(header)}]
    for r in rec.records:
        payload = _jsonable(r.payload)
        body = payload if isinstance(payload, dict) else {"data": payload}
        lines.append({"t": round(r.t, 6), "kind": r.kind, **body})
    integrity = {"status": rec.integrity.status, "message": rec.integrity.message}
    if rec.end is not None:
        lines.append({"kind": "end", **_jsonable(rec.end), "truncated": rec.truncated,
                      "integrity": integrity})
    else:
        # A crashed or cut recording has no end record: the last line still says how it ends,
        # marked as not recorded.
        lines.append({"kind": "end", "recorded": False, "truncated": True, "integrity": integrity})
    if args.json:
        for line in lines:
            print(json.dumps(line, ensure_ascii=True))
    else:
        for line in lines:
            t = line.pop("t", None)
            kind = line.pop("kind")
            prefix = f"{t:10.3f}" if t is not None else " " * 10
            print(f"{prefix}  {kind:12} {json.dumps(line, ensure_ascii=True)}")
    return 0


def cmd_recordings_verify(args: argparse.Namespace) -> int:
    from gateway.recording import verify_recording

    key = _public_key(args)
    if key is None:
        print("cannot verify: no recording key found (pass -c DIR of the gateway that wrote it)",
              file=sys.stderr)
        return 2
    integrity = verify_recording(Path(args.file), key)
    if integrity.status == "verified":
        print(f"{args.file}: verified")
        return 0
    where = f" (first bad frame: {integrity.first_bad_frame})" if integrity.first_bad_frame is not None else ""
    print(f"{args.file}: {integrity.status}{where}: {integrity.message}", file=sys.stderr)
    return 1


def _entry_point(group: str, name: str) -> Any:
    """Load a contributed function by entry point: the gateway never imports the replayer or a
    connector (DESIGN.md; tests/unit/test_layering.py), it finds them through package metadata."""
    from importlib.metadata import entry_points

    found = entry_points(group=group, name=name)
    if not found:
        raise GatewayError(
            f"nothing provides the {group!r} entry point {name!r}: reinstall wardgate "
            "(pip install -e .) so that its entry points are registered"
        )
    return next(iter(found)).load()


def cmd_replay(args: argparse.Namespace) -> int:
    from gateway.recording import load_public_key

    replay = _entry_point("wardgate.replayer", "main")
    path = Path(args.path) if args.path else None
    try:
        config = _config(args)
    except GatewayError:
        # An auditor may hold only a copied recording and the public key, without the
        # gateway's configuration.
        if path is None:
            raise
        config = None
    key: Any = Path(args.key) if args.key else None
    if key is None and config is not None:
        try:
            key = load_public_key(config.data_dir)
        except (GatewayError, OSError, ValueError):
            key = None  # the replayer then shows intact files as UNSIGNED and says why
    data_dir = config.data_dir if config is not None else None
    recordings = data_dir / "recordings" if data_dir is not None else path
    assert recordings is not None
    return int(replay(path, recordings, key, data_dir=data_dir))


def cmd_contributed(args: argparse.Namespace) -> int:
    """A subcommand a connector contributes (``wardgate.commands`` entry points), e.g. demo."""
    return int(_entry_point("wardgate.commands", args.command)(args.rest))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wardgate", description=__doc__)
    parser.add_argument("-c", "--config", metavar="DIR",
                        help="configuration directory (default: $WARDGATE_CONFIG or ./conf.d)")
    parser.add_argument("-v", "--verbose", action="count", default=0)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the gateway")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("config", help="configuration tools")
    csub = p.add_subparsers(dest="config_command", required=True)
    c = csub.add_parser("check", help="validate the configuration without serving")
    c.set_defaults(func=cmd_config_check)

    p = sub.add_parser("token", help="mint a token with the embedded issuer (prints only the JWT)")
    p.add_argument("--sub", required=True, help="subject (who the token is for)")
    p.add_argument("--groups", action="append", default=[], help="group(s), comma-separated or repeated")
    p.add_argument("--ttl", type=parse_duration, default=parse_duration("15m"), help="lifetime (15m)")
    p.add_argument("--aud", help="audience (default: [auth] audience)")
    p.set_defaults(func=cmd_token)

    p = sub.add_parser("recordings", help="list, show and verify session recordings")
    rsub = p.add_subparsers(dest="recordings_command", required=True)
    r = rsub.add_parser("list")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_recordings_list)
    r = rsub.add_parser("show")
    r.add_argument("file")
    r.add_argument("--json", action="store_true", help="one JSON object per line")
    r.set_defaults(func=cmd_recordings_show)
    r = rsub.add_parser("verify")
    r.add_argument("file")
    r.set_defaults(func=cmd_recordings_verify)

    p = sub.add_parser("replay", help="browse and replay session recordings (terminal UI)")
    p.add_argument("path", nargs="?", metavar="PATH",
                   help="a recording or a directory of recordings "
                        "(default: the recordings of the configuration)")
    # Declared here too: otherwise `replay -c DIR` would take DIR as PATH.
    p.add_argument("-c", "--config", metavar="DIR", default=argparse.SUPPRESS,
                   help="configuration directory (default: $WARDGATE_CONFIG or ./conf.d)")
    p.add_argument("--key", metavar="PEM",
                   help="public key that verifies the seals "
                        "(default: <data_dir>/keys/recording-ed25519.pub.pem)")
    p.set_defaults(func=cmd_replay)

    from importlib.metadata import entry_points

    for ep in sorted(entry_points(group="wardgate.commands"), key=lambda e: e.name):
        p = sub.add_parser(ep.name, help=f"{ep.name} (contributed by {ep.value.split(':')[0]})",
                           add_help=False)
        p.add_argument("rest", nargs=argparse.REMAINDER)
        p.set_defaults(func=cmd_contributed)

    from gateway.admin import commands as admin_commands

    admin_commands.add_parsers(sub, parse_duration)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    # -c may also come after the subcommand (`wardgate token -c DIR ...`): accept both.
    args, rest = parser.parse_known_args(argv)
    if rest and getattr(args, "func", None) is cmd_contributed:
        args.rest = [*rest, *args.rest]  # a contributed command parses its own options
    elif rest:
        extra = argparse.ArgumentParser(add_help=False)
        extra.add_argument("-c", "--config", metavar="DIR")
        extra_args, unknown = extra.parse_known_args(rest)
        if unknown:
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
        if extra_args.config:
            args.config = extra_args.config
    logging.basicConfig(
        level=logging.DEBUG if args.verbose > 1 else logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        if getattr(args, "command", None) in ("review", "access"):
            from gateway.admin import commands as admin_commands

            return admin_commands.run(args.func, args)
        return int(args.func(args))
    except GatewayError as exc:
        print(f"wardgate: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
