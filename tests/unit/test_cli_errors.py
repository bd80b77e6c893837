"""Every operator mistake on the command line: one line on stderr, a sensible exit status, never
a traceback. The CLI entry point runs in-process with argv (``gateway.cli.main``)."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

from gateway import cli
from gateway.cli import comma_list, main, parse_duration
from gateway.errors import GatewayError
from gateway.recording import RecordingStore, RecordingWriter, load_or_create_signing_key

Run = tuple[int, str, str]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> Run:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "Traceback" not in out
    return code, out, err


def one_line(err: str) -> str:
    """The failure is exactly one line on stderr (warnings aside)."""
    lines = [line for line in err.splitlines() if not line.startswith("wardgate: warning:")]
    assert len(lines) == 1, err
    return lines[0]


def write_conf(root: Path, extra: str = "") -> Path:
    conf = root / "conf.d"
    conf.mkdir(parents=True, exist_ok=True)
    (conf / "10.toml").write_text(
        '[gateway]\ndata_dir = "var"\n'
        '[listeners.pg]\nprotocol = "postgres"\nbind = "127.0.0.1:0"\n'
        '[targets.pg-app]\nprotocol = "postgres"\naddress = "127.0.0.1:5432"\n' + extra
    )
    return conf


def make_recording(conf: Path, session_id: str = "0123456789abcdef") -> Path:
    data_dir = conf.parent / "var"
    key = load_or_create_signing_key(data_dir)
    path = RecordingStore(data_dir / "recordings").new_path(session_id, 1_700_000_000.0)
    header = {"session_id": session_id, "identity": {"sub": "agent"}, "target": {"name": "db"},
              "protocol": "postgres", "peer": "t", "started": 1_700_000_000.0}  # fmt: skip
    writer = RecordingWriter.create(path, header, key)
    writer.record("query", {"sql": "select 1"})
    writer.close({"reason": "client closed"})
    return path


# --- usage errors: argparse, but one line ---------------------------------------------------

USAGE = [
    ([], "wardgate: error: the following arguments are required: command; see `wardgate --help`"),
    (["bogus"], "wardgate: error: argument command: invalid choice: 'bogus' (choose from "),
    (["config", "bogus"], "wardgate config: error: argument config_command: invalid choice: "),
    (["--bogus", "config", "check"],
     "wardgate: error: unrecognized arguments: --bogus; see `wardgate --help`"),
    (["token"], ("wardgate token: error: the following arguments are required: --sub; "
                "see `wardgate token --help`")),
    (["token", "--sub", "a", "--ttl", "5x"],
     ("wardgate token: error: argument --ttl: not a duration: '5x' (examples: 90s, 15m, 1h); "
     "see `wardgate token --help`")),
    (["token", "--sub", "a", "--ttl", "0"],
     ("wardgate token: error: argument --ttl: a duration must be positive; "
     "see `wardgate token --help`")),
    (["token", "--sub", "a", "--ttl", "9" * 400],
     ("wardgate token: error: argument --ttl: not a duration: '999999999999999999999999…' is too "
     "large; see `wardgate token --help`")),
    (["token", "--sub", " "],
     "wardgate token: error: argument --sub: must not be empty; see `wardgate token --help`"),
    (["review", "list", "--limit", "x"],
     ("wardgate review list: error: argument --limit: invalid int value: 'x'; "
     "see `wardgate review list --help`")),
    (["access", "request", "--target", "t", "--grant", "w", "--reason", "r", "--for", "5x"],
     ("wardgate access request: error: argument --for: not a duration: '5x' (examples: 90s, 15m, "
     "1h); see `wardgate access request --help`")),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "line"), USAGE)
def test_usage_errors_are_one_line_with_a_help_pointer(
    capsys: pytest.CaptureFixture[str], argv: list[str], line: str
) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert one_line(err).startswith(line)
    assert one_line(err).endswith("--help`")


def test_help_is_not_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "token", "--help")
    assert code == 0 and "--groups" in out


DURATIONS = [("90", 90.0), ("90s", 90.0), ("15m", 900.0), ("1h", 3600.0), ("1.5d", 129600.0),
             (" 2 m ", 120.0)]  # fmt: skip


@pytest.mark.parametrize(("text", "seconds"), DURATIONS)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


COMMA_LISTS = [
    (["a, b"], ["a", "b"]),
    (["a,,b,"], ["a", "b"]),
    ([" a ", "b , a"], ["a", "b"]),
    ([",", " "], []),
    (["ai-agents"], ["ai-agents"]),
]


@pytest.mark.parametrize(("given", "expected"), COMMA_LISTS)
def test_comma_lists_are_trimmed_and_empty_entries_dropped(
    given: list[str], expected: list[str]
) -> None:
    assert comma_list(given) == expected


# --- the configuration directory ------------------------------------------------------------


def test_config_errors_name_the_directory_or_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope"
    code, _, err = run(capsys, "-c", str(missing), "config", "check")
    assert code == 2
    assert one_line(err) == (
        f"wardgate: error: configuration directory {missing} (-c) does not exist; pass -c DIR or "
        "set WARDGATE_CONFIG to a directory of *.toml files"
    )
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "notes.txt").write_text("x")
    code, _, err = run(capsys, "-c", str(empty), "config", "check")
    assert code == 2
    assert one_line(err) == (
        f"wardgate: error: no *.toml files in configuration directory {empty}; copy the shipped "
        "conf.d/ to start from a working default"
    )
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "10.toml").write_text("[gateway]\ndata_dir = = 1\n")
    code, _, err = run(capsys, "-c", str(bad), "token", "--sub", "a")
    assert code == 2
    assert one_line(err) == (
        f"wardgate: error: {bad}/10.toml: invalid TOML: Invalid value (at line 2, column 12)"
    )


def _unreadable(monkeypatch: pytest.MonkeyPatch, victim: Path) -> None:
    """Make ``victim`` unreadable even to root (these tests run as root in CI): open() of it
    fails as it would after ``chmod 0``."""
    real_open = open

    def guarded_open(file: object, *args: object, **kwargs: object) -> object:
        if Path(str(file)) == victim:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr("builtins.open", guarded_open)
    real_read_bytes = Path.read_bytes

    def guarded_read_bytes(self: Path) -> bytes:
        if self == victim:
            raise PermissionError(13, "Permission denied", str(self))
        return real_read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", guarded_read_bytes)


def test_an_unreadable_config_file_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = write_conf(tmp_path)
    _unreadable(monkeypatch, conf / "10.toml")
    code, _, err = run(capsys, "-c", str(conf), "config", "check")
    assert code == 2
    assert one_line(err) == f"wardgate: error: {conf}/10.toml: cannot read: Permission denied"


def test_config_check_warns_about_unset_password_env_and_still_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WG_TEST_UNSET_PW", raising=False)
    conf = write_conf(tmp_path, '[targets.pg-pw]\nprotocol = "postgres"\naddress = "h:1"\n'
                                'password_env = "WG_TEST_UNSET_PW"\n')  # fmt: skip
    code, out, err = run(capsys, "-c", str(conf), "config", "check")
    assert code == 0 and out.endswith(": ok (1 listener(s), 2 target(s), 0 rule(s))\n")
    assert err == (
        f"wardgate: warning: {conf}/10.toml: [targets.pg-pw] password_env: environment variable "
        'WG_TEST_UNSET_PW is not set; connections to target "pg-pw" will fail until it is\n'
    )


def test_config_check_warns_about_rule_targets_matching_no_target(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = write_conf(tmp_path)
    (conf / "50-rules.toml").write_text(
        '[[rules]]\nname = "typo"\ntargets = ["pg_*", "pg-*"]\naction = "allow"\n'
    )
    code, out, err = run(capsys, "-c", str(conf), "config", "check")
    assert code == 0 and ": ok (" in out
    assert err == (
        f'wardgate: warning: {conf}/50-rules.toml: [[rules]] "typo" targets: "pg_*" matches no '
        "configured target (targets: pg-app); check it for a typo\n"
    )


# --- wardgate token -------------------------------------------------------------------------


def _claims(token: str) -> dict[str, object]:
    part = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))))


def test_token_groups_are_trimmed_and_empty_entries_dropped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = write_conf(tmp_path)
    code, out, _ = run(capsys, "-c", str(conf), "token", "--sub", " alice ",
                       "--groups", "ai-agents, dba", "--groups", ",reporting,,")  # fmt: skip
    assert code == 0
    claims = _claims(out.strip())
    assert claims["groups"] == ["ai-agents", "dba", "reporting"]
    assert claims["sub"] == "alice"


def test_token_without_the_embedded_issuer_names_the_key_and_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = write_conf(tmp_path, '[auth]\nissuer = "https://idp.example.com"\n')
    code, out, err = run(capsys, "-c", str(conf), "token", "--sub", "a")
    assert code == 2 and out == ""
    assert one_line(err) == (
        f'wardgate: error: {conf}/10.toml: [auth] issuer is "https://idp.example.com", so tokens '
        'come from that identity provider; `wardgate token` mints only with [auth] issuer = '
        '"embedded"'
    )


def test_a_token_the_issuer_refuses_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = write_conf(tmp_path)
    groups = ",".join(f"g{i}" for i in range(300))
    code, _, err = run(capsys, "-c", str(conf), "token", "--sub", "a", "--groups", groups)
    assert code == 2
    assert one_line(err) == "wardgate: error: cannot mint the token: at most 256 groups fit in a token"


# --- recordings -----------------------------------------------------------------------------


def _bad_files(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "empty.wgrec").write_bytes(b"")
    (tmp_path / "text.wgrec").write_text("hello\n")
    (tmp_path / "dir.wgrec").mkdir()
    return {n: tmp_path / f"{n}.wgrec" for n in ("empty", "text", "dir", "missing")}


RECORDING_INPUTS = [
    ("missing", ("{p} does not exist; name a .wgrec file or a session id (`wardgate recordings "
                "list` shows them)")),
    ("empty", ("{p} is empty (0 bytes), not a recording (a session that crashed before its first "
              "write leaves such a file)")),
    ("text", "{p} is not a wardgate recording (it does not start with the recording magic bytes)"),
    ("dir", ("{p} is a directory; name a .wgrec file or a session id (`wardgate recordings list` "
            "shows them), or browse it with `wardgate replay {p}`")),
]  # fmt: skip


@pytest.mark.parametrize("command", ["show", "verify"])
@pytest.mark.parametrize(("name", "line"), RECORDING_INPUTS)
def test_recordings_show_and_verify_refuse_what_is_not_a_recording(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, name: str, line: str
) -> None:
    conf = write_conf(tmp_path)
    load_or_create_signing_key(tmp_path / "var")
    path = _bad_files(tmp_path)[name]
    code, out, err = run(capsys, "-c", str(conf), "recordings", command, str(path))
    assert code == 2 and out == ""
    assert one_line(err) == "wardgate: error: " + line.format(p=path)


@pytest.mark.parametrize("command", ["show", "verify"])
def test_an_unreadable_recording_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    command: str,
) -> None:
    conf = write_conf(tmp_path)
    path = make_recording(conf)
    _unreadable(monkeypatch, path)
    code, _, err = run(capsys, "-c", str(conf), "recordings", command, str(path))
    assert code == 2
    assert one_line(err) == f"wardgate: error: recording {path} could not be read: Permission denied"


def test_a_session_id_names_its_recording_and_a_bad_one_says_where_it_looked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = write_conf(tmp_path)
    monkeypatch.chdir(tmp_path)  # relative paths must not reach a real file by accident
    path = make_recording(conf, "0123456789abcdef")
    code, out, _ = run(capsys, "-c", str(conf), "recordings", "verify", "0123456789abcdef")
    assert code == 0 and out.startswith(f"{path}: verified: ")
    code, out, _ = run(capsys, "-c", str(conf), "recordings", "show", "--json", "0123456789abcdef")
    assert code == 0 and json.loads(out.splitlines()[0])["session_id"] == "0123456789abcdef"
    root = tmp_path / "var" / "recordings"
    for bad in ("feedfacefeedface", "no/such/recording", "0123456789abcde"):
        code, out, err = run(capsys, "-c", str(conf), "recordings", "show", bad)
        assert code == 2 and out == ""
        if "/" in bad:
            expected = f"{bad} does not exist; name a .wgrec file or a session id"
        else:
            expected = f"{bad} is neither a file nor the id of a session recorded in {root}"
        assert one_line(err).startswith(f"wardgate: error: {expected}")


def test_verify_says_how_to_give_a_key_and_refuses_a_bad_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = write_conf(tmp_path)
    path = make_recording(conf)
    elsewhere = tmp_path / "copy.wgrec"
    elsewhere.write_bytes(path.read_bytes())
    monkeypatch.chdir(tmp_path / "var")  # no ./conf.d here: an auditor with only the file
    code, _, err = run(capsys, "recordings", "verify", str(elsewhere))
    assert code == 2
    assert one_line(err) == (
        f"wardgate: error: cannot verify {elsewhere}: no recording key found; pass --key with "
        "the gateway's recording-ed25519.pub.pem, or -c DIR of the gateway that wrote it"
    )
    not_a_key = tmp_path / "key.pem"
    not_a_key.write_text("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    code, _, err = run(capsys, "recordings", "verify", str(elsewhere), "--key", str(not_a_key))
    assert code == 2
    assert one_line(err) == (
        f"wardgate: error: --key {not_a_key}: not a PEM Ed25519 key; pass the gateway's "
        "<data_dir>/keys/recording-ed25519.pub.pem"
    )
    public = tmp_path / "var" / "keys" / "recording-ed25519.pub.pem"
    code, out, _ = run(capsys, "recordings", "verify", str(elsewhere), "--key", str(public))
    assert code == 0 and "verified" in out


def test_verify_of_a_damaged_recording_is_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = write_conf(tmp_path)
    path = make_recording(conf)
    path.write_bytes(path.read_bytes()[:-20])
    code, out, err = run(capsys, "-c", str(conf), "recordings", "verify", str(path))
    assert code == 1 and out == ""
    assert re.fullmatch(rf"{re.escape(str(path))}: truncated: .+", one_line(err))


def test_recordings_list_shows_an_unreadable_file_among_the_others(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = write_conf(tmp_path)
    good = make_recording(conf)
    junk = good.with_name("20990101T000000.000000Z_junk.wgrec")
    junk.write_text("not a recording")
    code, out, err = run(capsys, "-c", str(conf), "recordings", "list", "--json")
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert [(line["file"], line["integrity"]) for line in lines] == [
        (str(junk), "unreadable"), (str(good), "verified")
    ]
    assert err == (
        f"wardgate: warning: {junk} is not a wardgate recording (it does not start with the "
        "recording magic bytes)\n"
    )


# --- replay (only the checks before the terminal UI starts) ----------------------------------


def test_replay_refuses_a_missing_path_a_non_recording_and_a_bad_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = write_conf(tmp_path)
    files = _bad_files(tmp_path)
    cases = [
        ((str(files["missing"]),),
         (f"{files['missing']} does not exist; name a .wgrec file, a directory of recordings or a "
         "session id (`wardgate recordings list` shows them)")),
        ((str(tmp_path / "no-such-dir"),),
         (f"{tmp_path}/no-such-dir does not exist; name a .wgrec file, a directory of recordings or "
         "a session id (`wardgate recordings list` shows them)")),
        ((str(files["text"]),),
         (f"{files['text']} is not a wardgate recording (it does not start with the recording "
         "magic bytes)")),
        ((str(tmp_path), "--key", str(tmp_path / "nope.pem")),
         (f"--key {tmp_path}/nope.pem: cannot be read: No such file or directory; pass the "
         "gateway's <data_dir>/keys/recording-ed25519.pub.pem")),
    ]  # fmt: skip
    for argv, line in cases:
        code, out, err = run(capsys, "-c", str(conf), "replay", *argv)
        assert code == 2 and out == ""
        assert one_line(err) == f"wardgate: error: {line}"


def test_replay_without_configuration_or_path_says_both_ways(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "replay")
    assert code == 2
    assert one_line(err) == (
        "wardgate: error: configuration directory conf.d (the default) does not exist; pass -c "
        "DIR or set WARDGATE_CONFIG to a directory of *.toml files; or name what to replay: "
        "wardgate replay PATH"
    )


# --- what is not the operator's fault still is one line ------------------------------------


def _raising(exc: BaseException) -> object:
    def command(args: object) -> int:
        raise exc

    return command


FAILURES = [
    (GatewayError("bad\nthing"), 2, "wardgate: error: bad thing"),
    (GatewayError('[x] unknown key "\x1b[2J\u202e"'), 2,
     'wardgate: error: [x] unknown key "\\x1b[2J\\u202e"'),
    (KeyboardInterrupt(), 130, "wardgate: interrupted"),
    (ExceptionGroup("nursery", [GatewayError("port taken")]), 2, "wardgate: error: port taken"),
    (BaseExceptionGroup("nursery", [BaseExceptionGroup("inner", [KeyboardInterrupt()])]), 130,
     "wardgate: interrupted"),
    (RuntimeError("boom"), 70, ("wardgate: internal error: RuntimeError: boom (a bug in wardgate, "
                               "please report it; rerun with -vv for the traceback)")),
    (ExceptionGroup("nursery", [ValueError("x")]), 70,
     ("wardgate: internal error: ValueError: x (a bug in wardgate, please report it; rerun with "
     "-vv for the traceback)")),
]  # fmt: skip


@pytest.mark.parametrize(("exc", "code", "line"), FAILURES)
def test_every_failure_is_one_line_and_an_exit_status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    exc: BaseException, code: int, line: str,
) -> None:
    monkeypatch.setattr(cli, "cmd_config_check", _raising(exc))
    got, out, err = run(capsys, "-c", str(write_conf(tmp_path)), "config", "check")
    assert (got, out, one_line(err)) == (code, "", line)


def test_an_internal_error_shows_its_traceback_only_with_vv(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "cmd_config_check", _raising(RuntimeError("boom")))
    assert main(["-vv", "-c", str(write_conf(tmp_path)), "config", "check"]) == 70
    err = capsys.readouterr().err
    assert "Traceback" in err and err.splitlines()[-1].startswith("wardgate: internal error:")


def test_a_closed_stdout_ends_quietly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "cmd_config_check", _raising(BrokenPipeError()))
    code, _, err = run(capsys, "-c", str(write_conf(tmp_path)), "config", "check")
    assert (code, err) == (141, "")


def test_a_certificate_openssl_refuses_stops_start_up_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from OpenSSL import SSL

    from gateway.runtime import Gateway

    def refuse(self: Gateway, alpn: object = ()) -> SSL.Context:
        raise SSL.Error([("SSL routines", "", "ee key too small")])

    monkeypatch.setattr(Gateway, "server_tls", refuse)
    conf = write_conf(tmp_path)
    code, out, err = run(capsys, "-c", str(conf), "serve")
    tls = tmp_path / "var" / "tls"
    assert (code, out) == (2, "")
    assert one_line(err) == (
        f"wardgate: error: OpenSSL refuses the listeners' certificate {tls}/gateway.crt with key "
        f"{tls}/gateway.key (ee key too small); delete both files to have a new pair generated"
    )
