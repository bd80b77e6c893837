"""`wardgate demo` tells the whole story in one command, with a real PostgreSQL."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.support.gateway import ROOT


def test_the_demo_masks_denies_holds_for_approval_and_records(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "gateway.cli", "demo", "--dir", str(tmp_path / "demo")],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "****-****-****-1111" in out and "4111" not in out.replace("****-****-****-1111", "")
    assert 'permission denied by wardgate rule "no ddl for agents"' in out
    assert "waiting for approval of review" in out and "DELETE 1" in out
    recording = next(line.strip() for line in out.splitlines() if line.strip().endswith(".wgrec"))
    verify = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "-c", str(tmp_path / "demo" / "conf.d"), "recordings", "verify", recording],
        capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert verify.returncode == 0, verify.stderr


# --- wardgate demo --keep --------------------------------------------------------------------


def _clean_env() -> dict[str, str]:
    # A developer's PGHOST or WARDGATE_TOKEN must not redirect what the printed commands do.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "WARDGATE"))}
    env["PYTHONPATH"] = str(ROOT)
    return env


class _Lines:
    """The demo's stdout, read by a thread so that waiting for a line can time out."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        assert process.stdout is not None
        stdout = process.stdout

        def pump() -> None:
            for line in stdout:
                self._queue.put(line.rstrip("\n"))
            self._queue.put(None)

        threading.Thread(target=pump, daemon=True).start()

    def until(self, marker: str, timeout: float = 240) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            self.seen.append(line)
            if marker in line:
                return "\n".join(self.seen)
        raise AssertionError(f"no {marker!r} in the demo's output:\n" + "\n".join(self.seen))


def _printed(out: str, start: str) -> str:
    """The one printed command line that starts with ``start`` (leading spaces aside)."""
    found = [line.strip() for line in out.splitlines() if line.strip().startswith(start)]
    assert len(found) == 1, (start, out)
    return found[0]


def _sh(command: str, *, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """A printed command line, run as the person would paste it into a shell."""
    return subprocess.run(["bash", "-c", command], check=False, capture_output=True, text=True,
                          timeout=timeout, env=_clean_env(), cwd="/")


def _refused(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_demo_keep_leaves_database_and_gateway_running_until_ctrl_c(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "demo", "--keep", "--dir", str(tmp_path / "demo")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT, env=_clean_env())
    lines = _Lines(process)
    try:
        out = lines.until("Press Ctrl-C to stop")
        assert "DELETE 1" in out  # the scripted session ran first
        pg_root = Path(re.search(r"throwaway PostgreSQL in (\S+) \.\.\.", out).group(1))  # type: ignore[union-attr]
        postmaster = int((pg_root / "data" / "postmaster.pid").read_text().split()[0])
        psql = _printed(out, "PGPASSWORD=")
        port = int(re.search(r"port=(\d+)", psql).group(1))  # type: ignore[union-attr]
        assert 'Connect as an agent to target "pg-demo"' in out

        # The agent connects with the printed line and reads masked values.
        read = _sh(psql + " -X -A -t -c 'SELECT name, card_number FROM customers ORDER BY id'")
        assert read.returncode == 0, read.stderr
        assert "Ada Lovelace|****-****-****-1111" in read.stdout and "4111" not in read.stdout

        # Another agent token from the printed command works too.
        minted = _sh(_printed(out, f"{_wardgate_prefix(out)} token --sub demo-agent"))
        assert minted.returncode == 0, minted.stderr
        again = _sh(psql.replace(psql.split("'")[1], minted.stdout.strip()) + " -X -A -t -c 'SELECT 1'")
        assert again.stdout.strip() == "1", again.stderr

        # A DELETE waits for a person; the printed approver commands list and approve it.
        held = subprocess.Popen(["bash", "-c", psql + " -X -c 'DELETE FROM customers WHERE id = 4'"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=_clean_env(), cwd="/")
        approver = _printed(out, 'export WARDGATE_TOKEN="$(')
        review_list = _printed(out, f"{_wardgate_prefix(out)} review list")
        review_id = None
        deadline = time.monotonic() + 60
        while review_id is None and time.monotonic() < deadline:
            listed = _sh(f"{approver}; {review_list}")
            assert listed.returncode == 0, listed.stderr
            review_id = next((line.split()[0] for line in listed.stdout.splitlines()
                              if "DELETE FROM customers WHERE id = 4" in line), None)
            time.sleep(0.3)
        assert review_id is not None
        approve = _printed(out, f"{_wardgate_prefix(out)} review approve REVIEW_ID")
        approved = _sh(f"{approver}; {approve.replace('REVIEW_ID', review_id)}")
        assert approved.returncode == 0, approved.stderr
        assert "DELETE 1" in held.communicate(timeout=60)[0]

        recordings = Path(re.search(r"Recordings: (\S+)", out).group(1))  # type: ignore[union-attr]
        assert len(list(recordings.rglob("*.wgrec"))) >= 3  # the scripted session's and ours
    except BaseException:
        # Ctrl-C first: killing the demo would leave its PostgreSQL behind.
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
        raise
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 0
    rest = lines.until("(signed, tamper-evident)", timeout=10)
    assert "SIGINT: stopping the gateway and PostgreSQL" in rest
    assert not pg_root.exists()
    deadline = time.monotonic() + 10
    while _alive(postmaster) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(postmaster)
    assert _refused(port)


def _wardgate_prefix(out: str) -> str:
    """``<wardgate> -c <conf.d>`` as the demo printed it."""
    command = next(line.strip() for line in out.splitlines() if " token --sub demo-agent " in line)
    return command.split(" token --sub")[0]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
