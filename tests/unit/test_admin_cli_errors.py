"""``wardgate review|access`` when the admin API cannot be used: one line naming the URL, why,
and what to check. Real sockets on loopback stand in for the wrong things an approver may reach:
nothing, a plain-text server, a TLS server with another certificate."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from gateway.certs import ensure_self_signed
from gateway.cli import main
from tests.support.ports import free_port


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err and out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    return code, lines[0]


@pytest.fixture(autouse=True)
def token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WARDGATE_TOKEN", "not-checked-before-the-connection")


def write_conf(root: Path, admin_port: int) -> Path:
    conf = root / "conf.d"
    conf.mkdir()
    (conf / "10.toml").write_text(f'[gateway]\ndata_dir = "var"\n[admin]\nbind = "127.0.0.1:{admin_port}"\n')
    return conf


@contextmanager
def server(reply: bytes, context: ssl.SSLContext | None = None) -> Iterator[int]:
    """Accept connections on loopback; (with TLS if given) answer each with ``reply``."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    sock.settimeout(0.05)  # close() does not wake a blocked accept(): poll the stop flag
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(5)
            try:
                if context is not None:
                    conn = context.wrap_socket(conn, server_side=True)
                conn.recv(4096)
                conn.sendall(reply)
            except OSError:
                pass  # the client gave up on the handshake, as it should
            finally:
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1]
    finally:
        stop.set()
        sock.close()
        thread.join(5)


def tls_context(directory: Path, hostnames: tuple[str, ...] = ("127.0.0.1",)) -> tuple[ssl.SSLContext, Path]:
    cert, key = ensure_self_signed(directory, hostnames=hostnames)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context, cert


def test_gateway_not_running_names_the_url_and_the_config_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    conf = write_conf(tmp_path, port)
    code, line = run(capsys, "-c", str(conf), "review", "list")
    assert code == 2
    assert line == (
        f"wardgate: error: cannot reach the admin API at https://127.0.0.1:{port}: connection "
        f"refused; is `wardgate serve` running with this configuration ([admin] bind in "
        f"{conf}/10.toml)?"
    )


def test_wrong_url_port_says_to_compare_with_the_admin_bind(
    capsys: pytest.CaptureFixture[str],
) -> None:
    port = free_port()
    code, line = run(capsys, "access", "list", "--url", f"https://127.0.0.1:{port}")
    assert code == 2
    assert line == (
        f"wardgate: error: cannot reach the admin API at https://127.0.0.1:{port}: connection "
        "refused; is `wardgate serve` running, and does its [admin] bind match --url?"
    )


def test_a_plain_text_server_is_a_tls_failure(capsys: pytest.CaptureFixture[str]) -> None:
    with server(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n") as port:
        code, line = run(capsys, "review", "list", "--url", f"https://127.0.0.1:{port}")
    assert code == 2
    assert line == (
        f"wardgate: error: TLS with https://127.0.0.1:{port} failed (wrong version number): "
        "something other than the wardgate admin API answers there; is `wardgate serve` running, "
        "and does its [admin] bind match --url?"
    )


def test_another_gateways_certificate_is_not_trusted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    context, _ = tls_context(tmp_path / "theirs")
    _, ours = tls_context(tmp_path / "ours")
    with server(b"", context) as port:
        code, line = run(capsys, "review", "list", "--url", f"https://127.0.0.1:{port}",
                         "--ca-file", str(ours))  # fmt: skip
    assert code == 2
    assert line == (
        f"wardgate: error: cannot trust the admin API at https://127.0.0.1:{port}: self-signed "
        f"certificate (checked against {ours}); pass --ca-file with that gateway's certificate "
        "([tls] cert_file, or <data_dir>/tls/gateway.crt), or -c DIR of that gateway"
    )


def test_a_certificate_for_another_host_is_not_trusted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    context, cert = tls_context(tmp_path / "tls", hostnames=("gateway.example",))
    with server(b"", context) as port:
        code, line = run(capsys, "review", "list", "--url", f"https://127.0.0.1:{port}",
                         "--ca-file", str(cert))  # fmt: skip
    assert code == 2
    assert line.startswith(
        f"wardgate: error: cannot trust the admin API at https://127.0.0.1:{port}: IP address "
        "mismatch, certificate is not valid for '127.0.0.1'."
    )


def test_a_server_that_is_not_the_api_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    context, cert = tls_context(tmp_path / "tls")
    with server(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello", context) as port:
        code, line = run(capsys, "review", "list", "--url", f"https://127.0.0.1:{port}",
                         "--ca-file", str(cert))  # fmt: skip
    assert code == 2
    assert line == (
        f"wardgate: error: the admin API answered 200 with a non-JSON body (https://127.0.0.1:"
        f"{port}); is the wardgate admin API there? check --url"
    )


CA_FILES = [
    ("missing.pem", None, "{p} cannot be read: No such file or directory"),
    ("text.pem", "hello", "{p} is not PEM (no -----BEGIN ...----- line)"),
    ("key.pem", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
     "{p} holds a private key, not a certificate"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "content", "reason"), CA_FILES)
def test_a_ca_file_that_is_not_a_pem_certificate_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, content: str | None, reason: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    code, line = run(capsys, "review", "list", "--url", "https://127.0.0.1:1", "--ca-file", str(path))
    assert code == 2
    assert line == (
        f"wardgate: error: --ca-file: {reason.format(p=path)}; pass --ca-file with the gateway's "
        "PEM certificate"
    )


IDS = [
    (["review", "show", "../../etc/passwd"],
     ("not a review id: '../../etc/passwd'; review ids look like r-0a1b2c3d4e (`wardgate review "
     "list --state all` shows them)")),
    (["review", "approve", "g-0a1b2c3d4e"],
     "g-0a1b2c3d4e is a grant id, not a review id; `wardgate access ...` handles grants"),
    (["access", "revoke", "r-0a1b2c3d4e"],
     "r-0a1b2c3d4e is a review id, not a grant id; `wardgate review ...` handles reviews"),
    (["access", "show", ""],
     "not a grant id: ''; grant ids look like g-0a1b2c3d4e (`wardgate access list` shows them)"),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "message"), IDS)
def test_a_bad_id_is_refused_before_anything_is_sent(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    # Port 1: a request would fail differently, so this proves nothing was sent.
    code, line = run(capsys, *argv, "--url", "https://127.0.0.1:1")
    assert code == 2
    assert line == f"wardgate: error: {message}"


def test_an_http_url_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    code, line = run(capsys, "review", "list", "--url", "http://127.0.0.1:8443")
    assert code == 2
    assert line == (
        "wardgate: error: the admin API URL must be https://HOST:PORT; got "
        "'http://127.0.0.1:8443' (--url)"
    )
