"""``wardgate demo``: the whole story in one command.

A throwaway PostgreSQL with a small customers table (test card numbers and e-mails), the gateway
in front of it, and a short scripted agent session: an allowed SELECT whose cards come back
masked, a DROP that is denied, a DELETE that needs a human's approval. Then it shows where the
recording is and how to replay it.
"""

from __future__ import annotations

import shutil
import subprocess
import textwrap
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


def write_config(workdir: Path, server: LocalServer, port: int) -> Path:
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

        [targets.pg-demo]
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
        sql = ["read"]
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
    dsn = f"host=127.0.0.1 port={port} dbname=pg-demo user=demo-agent sslmode=require"
    argv = [psql, dsn, "-X", "--echo-queries"]
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


def run_demo(workdir: Path) -> int:
    workdir = workdir.resolve()
    server = LocalServer()
    print(f"wardgate demo: starting a throwaway PostgreSQL in {server.root} ...", flush=True)
    server.start()
    try:
        port = free_port()
        conf = write_config(workdir, server, port)
        config = load_config(conf)
        gateway = build_gateway(config)
        assert gateway.issuer is not None
        token = gateway.issuer.mint(subject="demo-agent", groups=["ai-agents"], ttl=600,
                                    audience=config.auth.audience)
        print(f"wardgate demo: gateway listening on 127.0.0.1:{port}; the agent connects with a token "
              "for group ai-agents", flush=True)
        print("\nThe agent's session (one connection):")
        for number, (title, _) in enumerate(AGENT_STEPS, 1):
            print(f"  {number}. {title}")
        print()
        before = set(gateway.recordings.list())

        async def main() -> str:
            async with trio.open_nursery() as nursery:
                state: ServerState = await nursery.start(serve, gateway)
                approver = trio.CancelScope()

                async def approve() -> None:
                    with approver:
                        await _approver(gateway)

                nursery.start_soon(approve)
                try:
                    return await _agent_session(port, token)
                finally:
                    approver.cancel()
                    state.shutdown()  # graceful: the agent's session ends and is sealed

        print(trio.run(main), flush=True)
    finally:
        server.stop()
    recordings = [p for p in gateway.recordings.list() if p not in before]
    print("== The recording of this session (signed, tamper-evident)")
    for path in recordings:
        print(f"  {path}")
    if recordings:
        print(textwrap.dedent(f"""
            Show it, verify its signature, replay it:
              wardgate -c {conf} recordings show {recordings[0]}
              wardgate -c {conf} recordings verify {recordings[0]}
              wardgate -c {conf} replay {recordings[0]}
            """))
    return 0


def cli_main(argv: list[str]) -> int:
    """Entry point for ``wardgate demo [--dir DIR]`` (registered under ``wardgate.commands``)."""
    import argparse

    parser = argparse.ArgumentParser(prog="wardgate demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", default="var/demo", help="working directory (default: var/demo)")
    args = parser.parse_args(argv)
    return run_demo(Path(args.dir))
