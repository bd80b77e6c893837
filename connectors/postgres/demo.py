"""``wardgate demo``: the whole story in one command.

A throwaway PostgreSQL with a small customers table (test card numbers and e-mails), the gateway
in front of it, and a short scripted agent session: an allowed SELECT whose cards come back
masked, a DROP that is denied, a DELETE that needs a human's approval. Then it shows where the
recording is and how to replay it.

With ``--keep`` both stay up after the scripted session, and the demo prints how to connect as an
agent (a psql command line with a fresh token), how to approve as a person, and where the
recordings are; Ctrl-C (or SIGTERM) then stops the gateway and PostgreSQL and deletes the
database.
"""

from __future__ import annotations

import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import trio

from gateway.config import load_config
from gateway.model import Identity
from gateway.runtime import Gateway, build_gateway
from gateway.server import ServerState, serve

from .localserver import LocalServer, free_port

AGENT_STEPS = [
    ("The agent reads customers: allowed, cards and e-mails come back masked",
     "SELECT id, name, email, card_number FROM customers ORDER BY id;"),
    ("The agent tries to drop the table: denied by rule",
     "DROP TABLE customers;"),
    ("The agent deletes a row: held until a human approves it, then it runs",
     "DELETE FROM customers WHERE id = 3;"),
]


TARGET = "pg-demo"
AGENT = "demo-agent"
KEEP_TOKEN_TTL = 3600  # seconds: long enough to try things by hand


def write_config(workdir: Path, server: LocalServer, port: int, admin_port: int) -> Path:
    conf = workdir / "conf.d"
    conf.mkdir(parents=True, exist_ok=True)
    (conf / "10-demo.toml").write_text(textwrap.dedent(f"""
        # Written by `wardgate demo`; a complete, working configuration to read and copy.
        [gateway]
        data_dir = "state"
        shutdown_grace = 2

        [auth]
        issuer = "embedded"
        audience = "wardgate"

        [listeners.pg]
        protocol = "postgres"
        bind = "127.0.0.1:{port}"
        tls = "required"

        [admin]
        bind = "127.0.0.1:{admin_port}"

        [targets.{TARGET}]
        protocol = "postgres"
        address = "127.0.0.1:{server.port}"
        database = "app"
        user = "app_reader"
        password = "{server.password}"
        tls = "disable"

        [[rules]]
        name = "agents may read"
        groups = ["ai-agents"]
        targets = ["pg-*"]
        sql = ["read", "transaction", "session"]
        action = "allow"

        [[rules]]
        name = "destructive changes need review"
        groups = ["ai-agents"]
        sql = ["delete", "update", "truncate"]
        action = "review"
        reason = "a human approves destructive changes"

        [[rules]]
        name = "no ddl for agents"
        groups = ["ai-agents"]
        sql = ["ddl", "dcl", "admin", "unknown"]
        action = "deny"
        reason = "agents may not change the schema"

        [policy]
        default = "deny"

        [approvals]
        approver_groups = ["dba"]
        timeout = 60

        [masking]
        detectors = ["credit_card", "us_ssn", "email", "iban", "secrets"]
        columns = ["*password*", "*ssn*"]
        """))
    return conf


async def _agent_session(port: int, token: str) -> str:
    """One agent connection running the scripted steps, as psql shows them."""
    psql = shutil.which("psql")
    if psql is None:
        raise RuntimeError("the demo's agent uses psql: apt-get install postgresql-client")
    argv = [psql, _dsn(port), "-X", "--echo-queries"]
    for _, sql in AGENT_STEPS:
        argv += ["-c", sql]
    result = await trio.run_process(
        argv, capture_stdout=True, stderr=subprocess.STDOUT, check=False,
        env={"PGPASSWORD": token, "PATH": "/usr/bin:/bin"},
    )
    return result.stdout.decode(errors="replace")


async def _approver(gateway: Gateway) -> None:
    """Plays the human: approves the held DELETE (an operator would run
    `wardgate review approve ID`, or answer the webhook)."""
    service = gateway.approvals
    if service is None:
        return
    approver = Identity("demo-approver", frozenset({"dba"}), expires_at=4e9, issuer="demo")
    with service.subscribe() as events:
        async for event in events:
            if event.kind == "review_requested":
                await trio.sleep(1)  # long enough to see the agent wait
                print(f"[approver] demo-approver approves review {event.item.id}", flush=True)
                await service.approve(event.item.id, approver, "row 3 is a test customer")


def _dsn(port: int) -> str:
    return f"host=127.0.0.1 port={port} dbname={TARGET} user={AGENT} sslmode=require"


def _wardgate() -> str:
    """How the person running the demo calls wardgate: the venv's script when it is not on
    PATH (``make demo``), else plain ``wardgate``."""
    script = Path(sys.executable).parent / "wardgate"
    on_path = shutil.which("wardgate")
    if on_path is not None and (not script.exists() or Path(on_path).resolve() == script.resolve()):
        return "wardgate"
    return shlex.quote(str(script)) if script.exists() else f"{sys.executable} -m gateway.cli"


def keep_instructions(gateway: Gateway, server: LocalServer, port: int, token: str) -> str:
    """What ``--keep`` prints: how to connect, approve, find the recordings and stop."""
    config = gateway.config
    wg = f"{_wardgate()} -c {shlex.quote(str(config.config_dir))}"
    admin = config.admin.address if config.admin is not None else "(none)"
    return textwrap.dedent(f"""
        == The demo keeps running (--keep). In another terminal:

        Connect as an agent to target "{TARGET}" (PostgreSQL on 127.0.0.1:{server.port}, database
        app, behind the gateway on 127.0.0.1:{port}); the token is the password, valid for 1 hour:
          PGPASSWORD='{token}' psql "{_dsn(port)}"
        Another agent token:
          {wg} token --sub {AGENT} --groups ai-agents --ttl 1h

        Approve what the agent's DELETE/UPDATE wait for, as an approver (group dba; admin API
        on https://{admin}):
          export WARDGATE_TOKEN="$({wg} token --sub demo-approver --groups dba)"
          {wg} review list
          {wg} review approve REVIEW_ID --reason "checked"

        Recordings: {gateway.recordings.root}
          {wg} recordings list
          {wg} replay

        Press Ctrl-C to stop: the gateway and PostgreSQL stop and the demo database is deleted
        (the configuration and the recordings stay in {config.config_dir.parent}).
        """)


async def _until_signalled(signals: AsyncIterator[int], state: ServerState,
                           nursery: trio.Nursery) -> None:
    """The first SIGINT/SIGTERM shuts the gateway down gracefully, a second one at once."""
    received = 0
    async for signum in signals:
        received += 1
        if received == 1:
            print(f"\nwardgate demo: {signal.Signals(signum).name}: stopping the gateway and "
                  "PostgreSQL (again to stop at once)", flush=True)
            state.shutdown()
        else:
            nursery.cancel_scope.cancel()


def run_demo(workdir: Path, *, keep: bool = False) -> int:
    workdir = workdir.resolve()
    server = LocalServer()
    print(f"wardgate demo: starting a throwaway PostgreSQL in {server.root} ...", flush=True)
    server.start()
    try:
        port = free_port()
        conf = write_config(workdir, server, port, free_port())
        config = load_config(conf)
        gateway = build_gateway(config)
        issuer = gateway.issuer
        assert issuer is not None
        token = issuer.mint(subject=AGENT, groups=["ai-agents"], ttl=600,
                                    audience=config.auth.audience)
        print(f"wardgate demo: gateway listening on 127.0.0.1:{port}; the agent connects with a token "
              "for group ai-agents", flush=True)
        print("\nThe agent's session (one connection):")
        for number, (title, _) in enumerate(AGENT_STEPS, 1):
            print(f"  {number}. {title}")
        print(flush=True)
        before = set(gateway.recordings.list())

        async def run(signals: AsyncIterator[int] | None) -> None:
            async with trio.open_nursery() as nursery:

                async def serve_then_stop(
                    task_status: trio.TaskStatus[ServerState] = trio.TASK_STATUS_IGNORED,
                ) -> None:
                    await serve(gateway, task_status=task_status)
                    nursery.cancel_scope.cancel()  # shut down: stop waiting for signals

                state: ServerState = await nursery.start(serve_then_stop)
                approver = trio.CancelScope()

                async def approve() -> None:
                    with approver:
                        await _approver(gateway)

                nursery.start_soon(approve)
                try:
                    print(await _agent_session(port, token), flush=True)
                finally:
                    approver.cancel()  # from here on, people approve
                if signals is None:
                    state.shutdown()  # graceful: the agent's session ends and is sealed
                    return
                fresh = issuer.mint(subject=AGENT, groups=["ai-agents"], ttl=KEEP_TOKEN_TTL,
                                    audience=config.auth.audience)
                print(keep_instructions(gateway, server, port, fresh), flush=True)
                nursery.start_soon(_until_signalled, signals, state, nursery)

        async def main() -> None:
            try:
                if keep:
                    # Opened before the instructions are printed, so that no Ctrl-C after them
                    # can skip the clean-up.
                    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                        await run(signals)
                else:
                    await run(None)
            finally:
                with trio.CancelScope(shield=True):
                    await gateway.aclose()

        trio.run(main)
    finally:
        server.stop()
        if keep:
            print(f"wardgate demo: stopped; PostgreSQL's files in {server.root} are deleted",
                  flush=True)
    recordings = [p for p in gateway.recordings.list() if p not in before]
    sessions = "the demo's sessions" if keep else "this session"
    print(f"== The recording{'s' if keep else ''} of {sessions} (signed, tamper-evident)")
    for path in recordings:
        print(f"  {path}")
    if recordings:
        wg = f"{_wardgate()} -c {shlex.quote(str(conf))}"
        shown = shlex.quote(str(recordings[0]))
        print(textwrap.dedent(f"""
            Show it, verify its signature, replay it:
              {wg} recordings show {shown}
              {wg} recordings verify {shown}
              {wg} replay {shown}
            """), flush=True)
    return 0


def cli_main(argv: list[str]) -> int:
    """Entry point for ``wardgate demo [--dir DIR] [--keep]`` (``wardgate.commands``)."""
    import argparse

    parser = argparse.ArgumentParser(prog="wardgate demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", default="var/demo", help="working directory (default: var/demo)")
    parser.add_argument("--keep", action="store_true",
                        help="after the scripted session, keep PostgreSQL and the gateway running "
                             "for you to connect to; Ctrl-C stops both and deletes the database")
    args = parser.parse_args(argv)
    return run_demo(Path(args.dir), keep=args.keep)
