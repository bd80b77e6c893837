"""``wardgate serve`` as a real process: a port in use and Ctrl-C end it with one line and an
exit status, never a traceback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.ports import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def write_conf(root: Path, pg: int, other: int, admin: int) -> Path:
    conf = root / "conf.d"
    conf.mkdir()
    (conf / "10.toml").write_text(f"""
[gateway]
data_dir = "var"
shutdown_grace = 1

[listeners.other]
protocol = "postgres"
bind = "127.0.0.1:{other}"

[listeners.pg]
protocol = "postgres"
bind = "127.0.0.1:{pg}"

[admin]
bind = "127.0.0.1:{admin}"
""")
    return conf


def start(conf: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WARDGATE", "PG"))}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "-c", str(conf), "serve"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
    )  # fmt: skip


def wait_for(process: subprocess.Popen[str], text: str, timeout: float = 30) -> str:
    assert process.stdout is not None
    seen = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        seen += line
        if text in line:
            return seen
    raise AssertionError(f"{text!r} not printed; got {seen!r}")


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def test_a_port_in_use_exits_2_with_one_line_naming_the_listener(tmp_path: Path) -> None:
    with socket.socket() as postgres:  # stands in for a PostgreSQL already on the port
        postgres.bind(("127.0.0.1", 0))
        postgres.listen()
        busy = postgres.getsockname()[1]
        other, admin = free_port(), free_port()
        conf = write_conf(tmp_path, busy, other, admin)
        process = start(conf)
        _, err = process.communicate(timeout=60)
    assert process.returncode == 2
    assert "Traceback" not in err
    assert err.splitlines() == [
        (f'wardgate: error: listener "pg" cannot listen on 127.0.0.1:{busy}: address already in use '
        f"(another wardgate or PostgreSQL?); stop that process or change [listeners.pg] bind in "
        f"{conf}/10.toml")
    ]
    assert port_is_free(other) and port_is_free(admin)


def test_ctrl_c_shuts_down_gracefully_and_exits_0(tmp_path: Path) -> None:
    conf = write_conf(tmp_path, free_port(), free_port(), free_port())
    process = start(conf)
    try:
        wait_for(process, "wardgate: listener pg on")
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "wardgate: SIGINT: shutting down (again to stop at once)" in out
    assert "Traceback" not in err


def test_ctrl_c_during_start_up_is_one_line(tmp_path: Path) -> None:
    conf = write_conf(tmp_path, free_port(), free_port(), free_port())
    process = start(conf)
    try:
        # After the configuration is read, while the gateway is still being set up.
        wait_for(process, "wardgate: config ")
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert "Traceback" not in err
    # Either the interrupt landed before the signal handlers were installed, or it was taken
    # as the first Ctrl-C of a running gateway.
    assert (process.returncode, err.splitlines()[-1:]) in ((130, ["wardgate: interrupted"]), (0, []))
