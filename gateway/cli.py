"""The ``wardgate`` command line.

Every mistake an operator can make ends in one line on stderr that says what is wrong and how to
fix it, never a traceback, and in an exit status: 0 done; 1 a check failed (a recording did not
verify) or the admin API refused; 2 a usage, configuration or input error; 70 an internal error
(a bug: ``-vv`` shows the traceback); 130 interrupted; 141 stdout was closed (``| head``).
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import math
import os
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from gateway.errors import GatewayError, one_line

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 70  # sysexits.h EX_SOFTWARE
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
# What RecordingStore accepts as a session id (and so what can name a recording file).
_SESSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``1h``, ``1d`` -> seconds."""
    shown = repr(text if len(text) <= 24 else text[:24] + "…")
    m = _DURATION.match(text)
    if not m:
        raise argparse.ArgumentTypeError(f"not a duration: {shown} (examples: 90s, 15m, 1h)")
    seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if not math.isfinite(seconds):
        raise argparse.ArgumentTypeError(f"not a duration: {shown} is too large")
    if seconds <= 0:
        raise argparse.ArgumentTypeError("a duration must be positive")
    return seconds


def comma_list(values: Iterable[str]) -> list[str]:
    """``["a, b", "c,,"]`` -> ``["a", "b", "c"]``: trimmed, empty entries dropped, first wins."""
    items = (item.strip() for value in values for item in value.split(","))
    return list(dict.fromkeys(item for item in items if item))


def _non_empty(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text.strip()


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (argparse prints the whole usage first)."""

    def error(self, message: str) -> NoReturn:
        line = one_line(f"{self.prog}: error: {message}; see `{self.prog} --help`")
        self.exit(EXIT_USAGE, line + "\n")


def _warn(message: str) -> None:
    print(f"wardgate: warning: {one_line(message)}", file=sys.stderr)


def _config(args: argparse.Namespace) -> Any:
    from gateway.config import load_config, resolve_config_dir

    return load_config(resolve_config_dir(args.config, os.environ))


def _start_up_warnings(config: Any) -> None:
    from gateway.config import approval_warnings, target_glob_warnings

    for problem in (*config.problems, *approval_warnings(config), *target_glob_warnings(config)):
        _warn(problem)
    if not config.listeners:
        _warn(f"{config.config_dir}: no [listeners.NAME] table, so agents have nothing to "
              "connect to; add one (see docs/configuration.md)")  # fmt: skip


def _check_listener_tls(gw: Any) -> None:
    """Build the listeners' TLS context now: OpenSSL refusing the certificate must stop start-up,
    not fail the first client's handshake."""
    from OpenSSL import SSL

    try:
        gw.server_tls()
    except SSL.Error as exc:
        parts = exc.args[0] if exc.args and isinstance(exc.args[0], list) else []
        reason = "; ".join(str(p[-1]) for p in parts if isinstance(p, tuple) and p) or str(exc)
        if gw.config.tls.cert_file:
            fix = "point [tls] cert_file and key_file at a pair OpenSSL accepts"
        else:
            fix = "delete both files to have a new pair generated"
        raise GatewayError(
            f"OpenSSL refuses the listeners' certificate {gw.cert_file} with key {gw.key_file} "
            f"({reason}); {fix}"
        ) from exc


def _check_rule_words(gw: Any) -> None:
    """Every word the rules name is a category or a kind or flag of a protocol they apply to:
    a misspelt word would be a rule that never matches."""
    from gateway.vocabulary import check_rule_vocabulary, collect_vocabularies

    check_rule_vocabulary(gw.config, collect_vocabularies(gw.plugins), set(gw.connectors))


def cmd_serve(args: argparse.Namespace) -> int:
    import trio

    from gateway.runtime import build_gateway
    from gateway.server import serve_until_signalled

    config = _config(args)
    _start_up_warnings(config)
    gw = build_gateway(config)
    try:
        _check_rule_words(gw)
        _check_listener_tls(gw)
    except GatewayError:
        trio.run(gw.aclose)
        raise
    print(f"wardgate: config {config.config_dir}, data in {config.data_dir}", flush=True)
    if gw.issuer is not None:
        print("wardgate: embedded issuer; mint a token with: "
              "wardgate token --sub you --groups ai-agents --ttl 15m", flush=True)
    trio.run(serve_until_signalled, gw)
    return 0


def cmd_config_vocabulary() -> int:
    """``config check --vocabulary``: the words rules may name, from the installed plugins alone,
    so that it helps while the configuration is still wrong."""
    from gateway.plugins import PluginHost
    from gateway.vocabulary import collect_vocabularies, format_vocabulary

    host = PluginHost()
    host.load_entry_points()
    host.check_pending()
    print(format_vocabulary(collect_vocabularies(host)))
    return 0


def cmd_config_check(args: argparse.Namespace) -> int:
    import trio

    from gateway.runtime import build_gateway

    if args.vocabulary:
        return cmd_config_vocabulary()
    config = _config(args)
    gw = build_gateway(config)  # loads plugins, detectors, keys: everything start-up would check
    try:
        _check_rule_words(gw)
        _check_listener_tls(gw)
    finally:
        trio.run(gw.aclose)
    _start_up_warnings(config)
    print(f"{config.config_dir}: ok ({len(config.listeners)} listener(s), "
          f"{len(config.targets)} target(s), {len(config.rules)} rule(s))")
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    from gateway.auth import EmbeddedIssuer

    config = _config(args)
    if config.auth.issuer != "embedded":
        origin = config.origin("auth", "issuer")
        raise GatewayError(
            f"{origin + ': ' if origin else ''}[auth] issuer is \"{config.auth.issuer}\", so "
            "tokens come from that identity provider; `wardgate token` mints only with "
            '[auth] issuer = "embedded"'
        )
    issuer = EmbeddedIssuer.load_or_create(config.data_dir)
    try:
        token = issuer.mint(
            subject=args.sub,
            groups=comma_list(args.groups),
            ttl=args.ttl,
            audience=args.aud or config.auth.audience,
        )
    except (TypeError, ValueError) as exc:
        raise GatewayError(f"cannot mint the token: {exc}") from exc
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


# --- recordings --------------------------------------------------------------------------------


def _key_file(path: Path) -> Any:
    """The Ed25519 public key in a PEM file (the exported .pub.pem, or the private key)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )
    from cryptography.hazmat.primitives.serialization import (
        load_pem_private_key,
        load_pem_public_key,
    )

    hint = "pass the gateway's <data_dir>/keys/recording-ed25519.pub.pem"
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise GatewayError(f"--key {path}: cannot be read: {exc.strerror or exc}; {hint}") from exc
    loaded: object
    try:
        loaded = load_pem_public_key(pem)
    except ValueError:
        try:
            loaded = load_pem_private_key(pem, password=None)
        except (TypeError, ValueError):
            raise GatewayError(f"--key {path}: not a PEM Ed25519 key; {hint}") from None
        if isinstance(loaded, Ed25519PrivateKey):
            loaded = loaded.public_key()
    if not isinstance(loaded, Ed25519PublicKey):
        raise GatewayError(f"--key {path}: holds a {type(loaded).__name__}, not Ed25519; {hint}")
    return loaded


def _public_key(args: argparse.Namespace) -> Any:
    """``--key`` if given (it must load), else the configuration's key, else None."""
    from gateway.recording import load_public_key

    if getattr(args, "key", None):
        return _key_file(Path(args.key))
    try:
        return load_public_key(_config(args).data_dir)
    except (GatewayError, OSError, ValueError):
        return None  # a copied recording without its gateway: shown as unsigned


def _recording_path(value: str, args: argparse.Namespace, *, directory: bool = False) -> Path:
    """The recording ``value`` names: a file, or a session id looked up in the configuration's
    recordings; with ``directory``, a directory of recordings too (``wardgate replay``)."""
    wanted = "a .wgrec file" + (", a directory of recordings" if directory else "")
    wanted += " or a session id (`wardgate recordings list` shows them)"
    path = Path(value)
    if path.is_dir():
        if not directory:
            raise GatewayError(
                f"{value} is a directory; name {wanted}, "
                f"or browse it with `wardgate replay {value}`"
            )
        try:
            next(path.iterdir(), None)
        except OSError as exc:
            raise GatewayError(f"{value}: cannot be read: {exc.strerror or exc}") from exc
        return path
    if path.exists():
        try:
            empty = path.stat().st_size == 0
        except OSError as exc:
            raise GatewayError(f"{value}: cannot be read: {exc.strerror or exc}") from exc
        if empty:
            raise GatewayError(
                f"{value} is empty (0 bytes), not a recording (a session that crashed before its "
                "first write leaves such a file)"
            )
        return path
    if not _SESSION_ID.fullmatch(value) or value.endswith(".wgrec"):
        raise GatewayError(f"{value} does not exist; name {wanted}")
    try:
        config = _config(args)
    except GatewayError as exc:
        raise GatewayError(
            f"{value} does not exist, and without a configuration it cannot be looked up as a "
            f"session id: {exc}"
        ) from exc
    from gateway.recording import RecordingStore

    root = config.data_dir / "recordings"
    found = [p for p in RecordingStore(root).list() if p.name.endswith(f"_{value}.wgrec")]
    if not found:
        raise GatewayError(
            f'{value} is neither a file nor the id of a session recorded in {root}; name {wanted}'
        )
    return found[0]


def cmd_recordings_list(args: argparse.Namespace) -> int:
    from gateway.recording import RecordingFormatError, RecordingStore, read_recording

    config = _config(args)
    store = RecordingStore(config.data_dir / "recordings")
    key = _public_key(args)
    paths = store.list()
    for path in paths:
        try:
            rec = read_recording(path, public_key=key)
        except RecordingFormatError as exc:
            # One bad file must not hide the others.
            _warn(str(exc))
            line: dict[str, Any] = {"file": str(path), "integrity": "unreadable", "error": str(exc)}
        else:
            h = rec.header
            ident = h.get("identity", {})
            target = h.get("target", {})
            line = {
                "file": str(path),
                "session_id": h.get("session_id"),
                "started": h.get("started_iso"),
                "sub": ident.get("sub") if isinstance(ident, dict) else None,
                "target": target.get("name") if isinstance(target, dict) else target,
                "protocol": h.get("protocol"),
                "records": len(rec.records),
                "integrity": rec.integrity.status,
            }
        if args.json:
            print(json.dumps(line))
        else:
            print(f"{line.get('started')!s:32}  {line.get('sub')!s:16} {line.get('target')!s:16} "
                  f"{line.get('protocol')!s:9} {line['integrity']:10} {line['file']}")  # fmt: skip
    if not paths and not args.json:
        print(f"no recordings in {store.root}", file=sys.stderr)
    return 0


def cmd_recordings_show(args: argparse.Namespace) -> int:
    from gateway.recording import read_recording

    path = _recording_path(args.file, args)
    rec = read_recording(path, public_key=_public_key(args))
    if not rec.header:
        # Cut before its header frame: there is no session to show.
        raise GatewayError(f"{path}: holds no session: {rec.integrity.message}")
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

    path = _recording_path(args.file, args)
    key = _public_key(args)
    if key is None:
        raise GatewayError(
            f"cannot verify {path}: no recording key found; pass --key with the gateway's "
            "recording-ed25519.pub.pem, or -c DIR of the gateway that wrote it"
        )
    integrity = verify_recording(path, key)
    if integrity.status == "verified":
        print(f"{path}: {integrity.message}")
        return 0
    print(f"{path}: {integrity.message}", file=sys.stderr)
    return EXIT_FAILED


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


def _replay_path(value: str, args: argparse.Namespace) -> Path:
    from gateway.recording import RecordingFormatError, iter_records

    path = _recording_path(value, args, directory=True)
    if path.is_file():
        try:
            iter_records(path).close()  # reads only the magic and the header frame
        except RecordingFormatError as exc:
            raise GatewayError(str(exc)) from exc
    return path


def cmd_replay(args: argparse.Namespace) -> int:
    from gateway.recording import load_public_key

    replay = _entry_point("wardgate.replayer", "main")
    path = _replay_path(args.path, args) if args.path else None
    try:
        config = _config(args)
    except GatewayError as exc:
        # An auditor may hold only a copied recording and the public key, without the
        # gateway's configuration.
        if path is None:
            raise GatewayError(f"{exc}; or name what to replay: wardgate replay PATH") from exc
        config = None
    key: Any = None
    if args.key:
        _key_file(Path(args.key))  # an unusable --key is an error here, not a warning in the UI
        key = Path(args.key)
    elif config is not None:
        try:
            key = load_public_key(config.data_dir)
        except (GatewayError, OSError, ValueError):
            key = None  # the replayer then shows intact files as UNSIGNED and says why
    data_dir = config.data_dir if config is not None else None
    recordings = data_dir / "recordings" if data_dir is not None else path
    if recordings is None:
        raise GatewayError("nothing to replay: name a recording or a directory, or pass -c DIR")
    return int(replay(path, recordings, key, data_dir=data_dir))


def cmd_contributed(args: argparse.Namespace) -> int:
    """A subcommand a connector contributes (``wardgate.commands`` entry points), e.g. demo."""
    return int(_entry_point("wardgate.commands", args.command)(args.rest))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="wardgate", description=__doc__.split("\n\n")[0])
    parser.add_argument("-c", "--config", metavar="DIR",
                        help="configuration directory (default: $WARDGATE_CONFIG or ./conf.d)")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more log output; -vv also shows tracebacks of internal errors")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the gateway")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("config", help="configuration tools")
    csub = p.add_subparsers(dest="config_command", required=True)
    c = csub.add_parser("check", help="validate the configuration without serving")
    c.add_argument("--vocabulary", action="store_true",
                   help="list the categories, kinds and flags rules may name, per protocol")
    c.set_defaults(func=cmd_config_check)

    p = sub.add_parser("token", help="mint a token with the embedded issuer (prints only the JWT)")
    p.add_argument("--sub", required=True, type=_non_empty, help="subject (who the token is for)")
    p.add_argument("--groups", action="append", default=[],
                   help="group(s), comma-separated or repeated")
    p.add_argument("--ttl", type=parse_duration, default=parse_duration("15m"), help="lifetime (15m)")
    p.add_argument("--aud", type=_non_empty, help="audience (default: [auth] audience)")
    p.set_defaults(func=cmd_token)

    key_help = ("public key that verifies the seals "
                "(default: <data_dir>/keys/recording-ed25519.pub.pem of -c DIR)")  # fmt: skip
    p = sub.add_parser("recordings", help="list, show and verify session recordings")
    rsub = p.add_subparsers(dest="recordings_command", required=True)
    r = rsub.add_parser("list")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_recordings_list)
    r = rsub.add_parser("show")
    r.add_argument("file", metavar="FILE", help="a .wgrec file, or a session id")
    r.add_argument("--json", action="store_true", help="one JSON object per line")
    r.add_argument("--key", metavar="PEM", help=key_help)
    r.set_defaults(func=cmd_recordings_show)
    r = rsub.add_parser("verify")
    r.add_argument("file", metavar="FILE", help="a .wgrec file, or a session id")
    r.add_argument("--key", metavar="PEM", help=key_help)
    r.set_defaults(func=cmd_recordings_verify)

    p = sub.add_parser("replay", help="browse and replay session recordings (terminal UI)")
    p.add_argument("path", nargs="?", metavar="PATH",
                   help="a recording, a directory of recordings or a session id "
                        "(default: the recordings of the configuration)")
    # Declared here too: otherwise `replay -c DIR` would take DIR as PATH.
    p.add_argument("-c", "--config", metavar="DIR", default=argparse.SUPPRESS,
                   help="configuration directory (default: $WARDGATE_CONFIG or ./conf.d)")
    p.add_argument("--key", metavar="PEM", help=key_help)
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


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
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
    return args


def _leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups, as trio's nurseries wrap them."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _explain(exc: BaseException) -> tuple[int, str] | None:
    """(exit status, line) for a failure the operator can act on; None for a bug."""
    from gateway.recording.format import RecordingFormatError

    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED, "wardgate: interrupted"
    if isinstance(exc, (GatewayError, RecordingFormatError)):
        return EXIT_USAGE, f"wardgate: error: {one_line(str(exc))}"
    return None


def _report(exc: BaseException, verbose: int) -> int:
    import trio

    leaves = [leaf for leaf in _leaves(exc) if not isinstance(leaf, trio.Cancelled)] or [exc]
    explained = [_explain(leaf) for leaf in leaves]
    if all(e is not None for e in explained):
        for line in dict.fromkeys(e[1] for e in explained if e is not None):
            print(line, file=sys.stderr)
        return max(e[0] for e in explained if e is not None)
    bug = next(leaf for leaf, e in zip(leaves, explained, strict=True) if e is None)
    if verbose >= 2:
        import traceback

        traceback.print_exception(exc)
    hint = "" if verbose >= 2 else "; rerun with -vv for the traceback"
    print(f"wardgate: internal error: {type(bug).__name__}: {one_line(str(bug))} "
          f"(a bug in wardgate, please report it{hint})", file=sys.stderr)  # fmt: skip
    return EXIT_INTERNAL


def _quiet_stdout() -> None:
    # stdout's reader went away (`wardgate recordings list | head`): point it at /dev/null so
    # the interpreter's final flush does not print a second error.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def main(argv: Sequence[str] | None = None) -> int:
    verbose = 0
    try:
        args = _parse(argv)
        verbose = args.verbose
        logging.basicConfig(
            level=logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        if getattr(args, "command", None) in ("review", "access"):
            from gateway.admin import commands as admin_commands

            return admin_commands.run(args.func, args)
        return int(args.func(args))
    except SystemExit as exc:
        # argparse: --help (0) or a usage error, whose one line it has printed already.
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    except BrokenPipeError:
        _quiet_stdout()
        return EXIT_BROKEN_PIPE
    except BaseException as exc:  # noqa: BLE001 - the one place every failure becomes one line
        return _report(exc, verbose)


if __name__ == "__main__":
    sys.exit(main())
