"""The approvers' CLI (``python -m gateway.cli review|access ...`` as a subprocess) against a
running admin listener; and grants that survive a restart of a real ``wardgate serve``."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from gateway.config import load_config
from gateway.model import Action, Decision
from gateway.plugins import PluginHost
from gateway.runtime import Gateway, build_gateway
from gateway.server import ServerState, serve
from tests.support.approvals import ALICE, DELETE, hold_delete
from tests.support.ports import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def write_conf(root: Path, admin_port: int) -> Path:
    conf = root / "conf.d"
    conf.mkdir(parents=True, exist_ok=True)
    (conf / "10-gateway.toml").write_text(f"""
[gateway]
data_dir = "var"
shutdown_grace = 1

[admin]
bind = "127.0.0.1:{admin_port}"

[approvals]
approver_groups = ["dba"]

[targets.pg-prod]
protocol = "postgres"
address = "127.0.0.1:5432"

[[rules]]
name = "deletes need review"
groups = ["ai-agents"]
sql = ["delete"]
action = "review"

[[rules]]
name = "writes with a grant"
groups = ["ai-agents"]
sql = ["update"]
action = "allow"
grant = "write"
""")
    return conf


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WARDGATE", "PG"))}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


async def wardgate(
    conf: Path, *args: str, token: str | None = None
) -> subprocess.CompletedProcess[bytes]:
    env = clean_env(**({"WARDGATE_TOKEN": token} if token else {}))
    return await trio.run_process(
        [sys.executable, "-m", "gateway.cli", "-c", str(conf), *args],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        env=env,
        cwd=ROOT,
    )


def mint(gw: Gateway, sub: str, *groups: str) -> str:
    assert gw.issuer is not None
    return gw.issuer.mint(subject=sub, groups=list(groups), ttl=900, audience="wardgate")


@asynccontextmanager
async def in_process_gateway(tmp_path: Path) -> AsyncIterator[tuple[Gateway, Path, trio.Nursery]]:
    conf = write_conf(tmp_path, free_port())
    config = dataclasses.replace(load_config(conf), listeners={})
    host = PluginHost()
    host.load_entry_points()
    gw = build_gateway(config, plugins=host)
    async with trio.open_nursery() as nursery:
        state: ServerState = await nursery.start(serve, gw)
        try:
            yield gw, conf, nursery
        finally:
            state.shutdown()


async def hold(gw: Gateway, nursery: trio.Nursery, results: list[Decision]) -> str:
    return await hold_delete(gw, nursery, ALICE, ["42"], results)


def lines(out: bytes) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.decode().splitlines() if line.strip()]


async def test_review_list_approve_and_self_approval_refused(tmp_path: Path) -> None:
    async with in_process_gateway(tmp_path) as (gw, conf, nursery):
        results: list[Decision] = []
        review_id = await hold(gw, nursery, results)
        bob = mint(gw, "bob", "dba")

        listed = await wardgate(conf, "review", "list", "--json", token=bob)
        assert listed.returncode == 0, listed.stderr
        (row,) = lines(listed.stdout)
        assert {k: row[k] for k in ("id", "state", "identity", "target", "command")} == {
            "id": review_id,
            "state": "pending",
            "identity": "alice",
            "target": "pg-prod",
            "command": DELETE.text,
        }

        human = await wardgate(conf, "review", "show", review_id, token=bob)
        assert human.returncode == 0 and DELETE.text.encode() in human.stdout

        # The requester, even holding an approver group, is refused: exit 1, one line why.
        selfish = await wardgate(
            conf,
            "review",
            "approve",
            review_id,
            "--reason",
            "mine",
            token=mint(gw, "alice", "ai-agents", "dba"),
        )
        assert selfish.returncode == 1
        stderr = selfish.stderr.decode()
        assert stderr.count("\n") == 1 and "refused" in stderr and "cannot decide" in stderr
        assert not results

        approved = await wardgate(
            conf, "review", "approve", review_id, "--reason", "ticket 9", "--token", bob
        )
        assert approved.returncode == 0, approved.stderr
        assert approved.stdout.decode().strip() == f"review {review_id}: approved"
        with trio.fail_after(10):
            while not results:
                await trio.sleep(0.01)
        assert results[0].action is Action.ALLOW

        again = await wardgate(conf, "review", "deny", review_id, token=bob)
        assert again.returncode == 1 and b"is approved" in again.stderr
        everything = await wardgate(conf, "review", "list", "--state", "all", "--json", token=bob)
        assert [r["state"] for r in lines(everything.stdout)] == ["approved"]


async def test_review_denied_through_the_cli_with_url_and_ca_file(tmp_path: Path) -> None:
    async with in_process_gateway(tmp_path) as (gw, conf, nursery):
        results: list[Decision] = []
        review_id = await hold(gw, nursery, results)
        url = f"https://127.0.0.1:{gw.config.admin.port}"  # type: ignore[union-attr]
        denied = await wardgate(
            conf,
            "review",
            "deny",
            review_id,
            "--reason",
            "wrong table",
            "--url",
            url,
            "--ca-file",
            str(gw.cert_file),
            token=mint(gw, "bob", "dba"),
        )
        assert denied.returncode == 0, denied.stderr
        with trio.fail_after(10):
            while not results:
                await trio.sleep(0.01)
        assert results[0].action is Action.DENY
        assert results[0].reason == f"review {review_id} was denied by bob: wrong table"

        # A certificate the CLI was not told to trust is refused.
        untrusted = await wardgate(
            conf, "review", "list", "--url", url, token=mint(gw, "bob", "dba")
        )
        assert untrusted.returncode == 2 and b"cannot trust" in untrusted.stderr


async def test_access_requests_through_the_cli(tmp_path: Path) -> None:
    async with in_process_gateway(tmp_path) as (gw, conf, _):
        alice = mint(gw, "alice", "ai-agents")
        bob = mint(gw, "bob", "dba")
        asked = await wardgate(
            conf,
            "access",
            "request",
            "--target",
            "pg-prod",
            "--grant",
            "write",
            "--for",
            "30m",
            "--reason",
            "incident 42",
            "--json",
            token=alice,
        )
        assert asked.returncode == 0, asked.stderr
        grant_id = lines(asked.stdout)[0]["id"]

        selfish = await wardgate(conf, "access", "approve", str(grant_id), token=alice)
        assert selfish.returncode == 1 and b"cannot decide" in selfish.stderr

        approved = await wardgate(conf, "access", "approve", str(grant_id), token=bob)
        assert approved.returncode == 0, approved.stderr
        assert gw.approvals is not None
        assert gw.approvals.active_grants("alice", "pg-prod") == {"write"}

        listed = await wardgate(conf, "access", "list", "--json", token=alice)
        (row,) = lines(listed.stdout)
        assert {k: row[k] for k in ("id", "state", "identity", "target", "command")} == {
            "id": grant_id,
            "state": "approved",
            "identity": "alice",
            "target": "pg-prod",
            "command": "grant write for 30m",
        }
        revoked = await wardgate(
            conf, "access", "revoke", str(grant_id), "--reason", "done", token=bob
        )
        assert revoked.returncode == 0
        assert gw.approvals.active_grants("alice", "pg-prod") == frozenset()

        unknown = await wardgate(
            conf,
            "access",
            "request",
            "--target",
            "pg-prod",
            "--grant",
            "root",
            "--for",
            "1h",
            "--reason",
            "x",
            token=alice,
        )
        assert unknown.returncode == 1 and b'no rule uses the grant "root"' in unknown.stderr


async def test_cli_without_a_token_says_how_to_get_one(tmp_path: Path) -> None:
    conf = write_conf(tmp_path, free_port())
    result = await wardgate(conf, "review", "list")
    assert result.returncode == 2
    assert b"no token: pass --token or set WARDGATE_TOKEN" in result.stderr


# --- a real `wardgate serve`, restarted ---------------------------------------------------------


def start_serve(conf: Path, log: Path) -> subprocess.Popen[bytes]:
    out = log.open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "-c", str(conf), "serve"],
        stdout=out,
        stderr=subprocess.STDOUT,
        env=clean_env(),
        cwd=ROOT,
    )
    deadline = time.monotonic() + 30
    starts = log.read_text().count("admin API on https://")
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gateway exited:\n{log.read_text()}")
        if log.read_text().count("admin API on https://") > starts:
            return process
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"gateway did not start:\n{log.read_text()}")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def cli(conf: Path, *args: str, token: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "-c", str(conf), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(WARDGATE_TOKEN=token),
        cwd=ROOT,
        check=False,
    )


def test_restart_keeps_grants(tmp_path: Path) -> None:
    conf = write_conf(tmp_path, free_port())
    log = tmp_path / "gateway.log"

    def token(sub: str, groups: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "gateway.cli", "-c", str(conf), "token", "--sub", sub,
             "--groups", groups], capture_output=True, text=True, check=True, env=clean_env(),
            cwd=ROOT)  # fmt: skip
        return result.stdout.strip()

    process = start_serve(conf, log)
    try:
        alice, bob = token("alice", "ai-agents"), token("bob", "dba")
        asked = cli(
            conf,
            "access",
            "request",
            "--target",
            "pg-prod",
            "--grant",
            "write",
            "--for",
            "2h",
            "--reason",
            "migration",
            "--json",
            token=alice,
        )
        assert asked.returncode == 0, asked.stderr + log.read_text()
        grant_id = json.loads(asked.stdout)["id"]
        assert cli(conf, "access", "approve", grant_id, token=bob).returncode == 0
    finally:
        stop(process)

    process = start_serve(conf, log)
    try:
        listed = cli(conf, "access", "list", "--state", "approved", "--json", token=bob)
        assert listed.returncode == 0, listed.stderr
        assert [json.loads(line)["id"] for line in listed.stdout.splitlines()] == [grant_id]
    finally:
        stop(process)
