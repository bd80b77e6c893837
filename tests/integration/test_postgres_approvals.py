"""Just-in-time approval through the PostgreSQL connector, with real clients and the real CLI."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support.gateway import GatewayProcess, start_gateway
from tests.support.pgcluster import PgCluster
from tests.support.ports import free_port

RULES = """
[[rules]]
name = "agents may read"
groups = ["ai-agents"]
sql = ["read", "transaction", "session", "insert"]
action = "allow"

[[rules]]
name = "deletes need review"
groups = ["ai-agents"]
sql = ["delete"]
action = "review"
reason = "a human approves deletes"

[[rules]]
name = "updates with a write grant"
groups = ["ai-agents"]
sql = ["update"]
action = "allow"
grant = "write"

[policy]
default = "deny"
"""


@pytest.fixture(scope="module")
def approvals_gateway(pg_cluster: PgCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    admin_port = free_port()
    gw = start_gateway(tmp_path_factory.mktemp("approvals"), pg_cluster, rules=RULES, extra_toml=f"""
[admin]
bind = "127.0.0.1:{admin_port}"

[approvals]
approver_groups = ["dba"]
timeout = 4
""")
    try:
        yield gw
    finally:
        gw.stop()


def cli(gw: GatewayProcess, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    return gw.wardgate(*args, "--token", token, check=False)


def pending_reviews(gw: GatewayProcess, token: str) -> list[dict[str, Any]]:
    r = cli(gw, token, "review", "list", "--json")
    assert r.returncode == 0, r.stderr
    return [row for row in map(json.loads, r.stdout.splitlines()) if row["state"] == "pending"]


def wait_for_pending(gw: GatewayProcess, token: str, known: set[str] = frozenset()) -> dict[str, Any]:  # type: ignore[assignment]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        fresh = [r for r in pending_reviews(gw, token) if r["id"] not in known]
        if fresh:
            return fresh[0]
        time.sleep(0.2)
    raise AssertionError("no review appeared")


class Agent(threading.Thread):
    """Runs one statement in the background, as an agent waiting for approval would."""

    def __init__(self, dsn: str, sql: str, params: tuple[Any, ...] | None = None) -> None:
        super().__init__(daemon=True)
        self.dsn, self.sql, self.params = dsn, sql, params
        self.error: BaseException | None = None
        self.notices: list[str] = []
        self.rowcount: int | None = None

    def run(self) -> None:
        try:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                conn.add_notice_handler(lambda d: self.notices.append(d.message_primary or ""))
                cur = conn.execute(self.sql, self.params)
                self.rowcount = cur.rowcount
        except BaseException as exc:  # surfaced by the test
            self.error = exc


def scratch_row(pg: PgCluster, name: str) -> int:
    return int(pg.sql(f"insert into customers(name) values ('{name}') returning id").strip().splitlines()[0])


def test_a_held_delete_runs_once_an_approver_approves_it_with_the_cli(approvals_gateway: GatewayProcess, pg_cluster: PgCluster) -> None:
    gw = approvals_gateway
    row = scratch_row(pg_cluster, "to-delete")
    approver = gw.token("bob", groups="dba")
    agent = Agent(gw.dsn(), "delete from customers where id = %s", (row,))
    agent.start()
    review = wait_for_pending(gw, approver)
    assert review["identity"] == "alice" and review["target"] == "pg-app"
    assert "delete from customers" in review["command"]
    approved = cli(gw, approver, "review", "approve", review["id"], "--reason", "looks right")
    assert approved.returncode == 0, approved.stderr
    agent.join(30)
    assert agent.error is None, agent.error
    assert agent.rowcount == 1
    assert any(review["id"] in n for n in agent.notices)  # told at once which review it waits on
    assert pg_cluster.sql(f"select count(*) from customers where id = {row}").strip() == "0"


def test_a_denied_review_is_an_error_and_nothing_runs(approvals_gateway: GatewayProcess, pg_cluster: PgCluster) -> None:
    gw = approvals_gateway
    row = scratch_row(pg_cluster, "keep-me")
    approver = gw.token("bob", groups="dba")
    agent = Agent(gw.dsn(), "delete from customers where id = %s", (row,))
    agent.start()
    review = wait_for_pending(gw, approver)
    assert cli(gw, approver, "review", "deny", review["id"], "--reason", "not today").returncode == 0
    agent.join(30)
    assert isinstance(agent.error, psycopg.errors.InsufficientPrivilege)
    assert "denied by bob" in str(agent.error) and "not today" in str(agent.error)
    assert pg_cluster.sql(f"select count(*) from customers where id = {row}").strip() == "1"
    pg_cluster.sql(f"delete from customers where id = {row}")


def test_an_unanswered_review_times_out(approvals_gateway: GatewayProcess, pg_cluster: PgCluster) -> None:
    gw = approvals_gateway
    r = subprocess.run(["psql", gw.dsn(), "-X", "-c", "delete from customers where id = -1"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "timed out" in r.stderr
    assert "waiting for approval" in r.stderr  # psql prints the notice while it waits


def test_the_requester_cannot_approve_its_own_review(approvals_gateway: GatewayProcess, pg_cluster: PgCluster) -> None:
    gw = approvals_gateway
    both = gw.token("carol", groups="ai-agents,dba")
    approver = gw.token("bob", groups="dba")
    agent = Agent(gw.dsn(token=both, user="carol"), "delete from customers where id = %s", (-2,))
    agent.start()
    review = wait_for_pending(gw, approver)
    own = cli(gw, both, "review", "approve", review["id"])
    assert own.returncode != 0
    assert len(own.stderr.strip().splitlines()) == 1 and "cannot decide it" in own.stderr
    cli(gw, approver, "review", "deny", review["id"])
    agent.join(30)


def test_an_approval_does_not_carry_over_to_other_parameters(approvals_gateway: GatewayProcess, pg_cluster: PgCluster) -> None:
    gw = approvals_gateway
    first, second = scratch_row(pg_cluster, "p1"), scratch_row(pg_cluster, "p2")
    approver = gw.token("bob", groups="dba")
    with psycopg.connect(gw.dsn(), autocommit=True) as conn:
        results: list[Any] = []

        def run(row: int) -> None:
            try:
                results.append(conn.execute("delete from customers where id = %s", (row,)).rowcount)
            except psycopg.Error as exc:
                results.append(exc)

        t = threading.Thread(target=run, args=(first,))
        t.start()
        review = wait_for_pending(gw, approver)
        cli(gw, approver, "review", "approve", review["id"])
        t.join(30)
        assert results == [1]
        # Same statement, same session, other parameter: a new review, not the old approval.
        t = threading.Thread(target=run, args=(second,))
        t.start()
        again = wait_for_pending(gw, approver, {review["id"]})
        assert again["id"] != review["id"]
        cli(gw, approver, "review", "deny", again["id"])
        t.join(30)
        assert isinstance(results[1], psycopg.errors.InsufficientPrivilege)
    assert pg_cluster.sql(f"select count(*) from customers where id = {second}").strip() == "1"
    pg_cluster.sql(f"delete from customers where id = {second}")


def test_a_time_boxed_grant_allows_writes_until_it_expires(approvals_gateway: GatewayProcess, pg_cluster: PgCluster) -> None:
    gw = approvals_gateway
    row = scratch_row(pg_cluster, "grant-me")
    agent = gw.token("dave", groups="ai-agents")
    approver = gw.token("bob", groups="dba")
    update = f"update customers set name = 'granted' where id = {row}"
    with psycopg.connect(gw.dsn(token=agent, user="dave"), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(update)
    requested = cli(gw, agent, "access", "request", "--target", "pg-app", "--grant", "write",
                    "--for", "8s", "--reason", "fix a name", "--json")
    assert requested.returncode == 0, requested.stderr
    grant_id = json.loads(requested.stdout.splitlines()[0])["id"]
    assert cli(gw, approver, "access", "approve", grant_id).returncode == 0
    with psycopg.connect(gw.dsn(token=agent, user="dave"), autocommit=True) as conn:
        assert conn.execute(update).rowcount == 1
        time.sleep(8.5)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(update)
    pg_cluster.sql(f"delete from customers where id = {row}")


def test_approvals_appear_in_the_recording(approvals_gateway: GatewayProcess) -> None:
    kinds: set[str] = set()
    for path in approvals_gateway.recordings():
        shown = approvals_gateway.wardgate("recordings", "show", str(path), "--json").stdout
        kinds |= {json.loads(line)["kind"] for line in shown.splitlines()}
    assert {"review_requested", "review_approved", "review_denied", "review_timed_out"} <= kinds


def test_a_client_that_disconnects_while_held_cancels_its_review(approvals_gateway: GatewayProcess) -> None:
    from connectors.postgres.messages import Query
    from tests.support.rawpg import login

    gw = approvals_gateway
    approver = gw.token("bob", groups="dba")
    conn = login(gw.port, gw.token("erin"))
    conn.send(Query("delete from customers where id = -3").encode())
    review = wait_for_pending(gw, approver)
    conn.close()
    deadline = time.monotonic() + 30
    state = "pending"
    while state == "pending" and time.monotonic() < deadline:
        shown = cli(gw, approver, "review", "show", review["id"], "--json")
        state = json.loads(shown.stdout.splitlines()[0])["state"]
        time.sleep(0.2)
    assert state == "cancelled"


def test_cancel_of_a_held_statement_cancels_the_review_and_the_session_goes_on(
    approvals_gateway: GatewayProcess,
) -> None:
    """psql's Ctrl-C (a CancelRequest, over TLS with libpq 17+ when psycopg uses cancel_safe)
    on a statement waiting for approval: the review is cancelled, the client gets 57014 as for
    any cancelled statement, and the session is usable."""
    gw = approvals_gateway
    dba = gw.token("dora", groups="dba")
    known = {r["id"] for r in pending_reviews(gw, dba)}
    with psycopg.connect(gw.dsn(), autocommit=True) as conn:
        failure: list[BaseException] = []

        def held() -> None:
            try:
                conn.execute("delete from customers where id = -1")
            except BaseException as exc:  # noqa: BLE001 - the test inspects it
                failure.append(exc)

        worker = threading.Thread(target=held)
        worker.start()
        review = wait_for_pending(gw, dba, known)
        cancel = getattr(conn, "cancel_safe", None)
        (cancel or conn.cancel)()
        worker.join(timeout=30)
        assert not worker.is_alive()
        assert failure and isinstance(failure[0], psycopg.errors.QueryCanceled)
        assert failure[0].sqlstate == "57014"
        assert conn.execute("select 1").fetchone() == (1,)
    states = {r["id"]: r["state"] for r in map(json.loads, cli(
        gw, dba, "review", "list", "--json", "--state", "all").stdout.splitlines())}
    assert states.get(review["id"]) == "cancelled"


def test_psql_ctrl_c_on_a_held_statement(approvals_gateway: GatewayProcess) -> None:
    import signal

    gw = approvals_gateway
    dba = gw.token("dora", groups="dba")
    known = {r["id"] for r in pending_reviews(gw, dba)}
    script = "delete from customers where id = -2;\n"
    proc = subprocess.Popen(["psql", gw.dsn(), "-X"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdin is not None
    proc.stdin.write(script)
    proc.stdin.flush()
    wait_for_pending(gw, dba, known)
    proc.send_signal(signal.SIGINT)  # psql sends a CancelRequest for the running statement
    out, err = proc.communicate(timeout=30)
    # (psql reading a script stops after a cancelled statement; the psycopg test above shows
    # the session itself goes on.)
    assert "Cancel request sent" in err and "canceling statement due to user request" in err
