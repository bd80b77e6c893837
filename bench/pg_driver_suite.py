#!/usr/bin/env python3
"""A PostgreSQL driver's own test suite, run directly and through wardgate: where the gateway
breaks real clients.

    .venv/bin/pip install psycopg2-binary          # bench-only; asyncpg is already a test extra
    .venv/bin/python bench/pg_driver_suite.py [--suite psycopg2|asyncpg|all] [--only TEXT] [--columns]

Downloads the sdist of the installed driver version (``pip download --no-binary :all:``; the
test files ship only there) into a cache under the system temp dir, starts a private PostgreSQL
cluster and the real gateway (TLS, policy with one allow-everything rule, masking with every
built-in detector, recording), then runs the suite twice with the stdlib unittest runner: straight
at the cluster and through the gateway, both with sslmode=require and as the same backend role.
It prints each run's totals and the tests that fail only through the gateway, grouped by cause
(error class + first line of the message, numbers folded). Per-test results (with tracebacks)
are left as JSON lines in the printed results directory. Exit status 0: a report, not a gate.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.driver_suite_recordings import RecordingSummary, print_summary, summarise
from tests.support.gateway import GatewayProcess, start_gateway
from tests.support.pgcluster import PgCluster

CHILD = Path(__file__).with_name("driver_suite_child.py")
CACHE = Path(tempfile.gettempdir()) / "wardgate-driver-suites"
ROLE = "compat"  # the backend role of both runs: a superuser, as the suites expect
GROUP = "compat"
RULES = textwrap.dedent(f"""
    [[rules]]
    name = "all"
    groups = ["{GROUP}"]
    action = "allow"

    [policy]
    default = "deny"
    """)
FAILED = ("fail", "error", "hung", "crashed")
PASSED = ("pass", "xfail")


@dataclass(frozen=True)
class Endpoint:
    """Where one run connects: the cluster itself or the gateway in front of it."""

    host: str
    port: int
    dbname: str
    user: str
    password: str


@dataclass(frozen=True)
class Suite:
    name: str
    module: str  # what to import to know the driver is installed
    distributions: tuple[str, ...]  # installed distributions that tell its version
    sdist: str  # the PyPI project whose sdist holds tests/
    loader: str  # how driver_suite_child.py builds the suite
    database: str  # the database the suite expects, and the target name in front of it
    extensions: tuple[str, ...]
    env: Callable[[Endpoint], dict[str, str]]
    install_hint: str
    # Other databases the suite's tests connect to by name: each gets a target of the same name,
    # so that what runs behind "dbname names a target" is tested too.
    other_databases: tuple[str, ...] = ()
    tests_only: bool = False  # run from a copy of tests/ alone (the sdist's package would shadow the wheel)


def _psycopg2_env(ep: Endpoint) -> dict[str, str]:
    return {
        "PSYCOPG2_TESTDB": ep.dbname,
        "PSYCOPG2_TESTDB_HOST": ep.host,
        "PSYCOPG2_TESTDB_PORT": str(ep.port),
        "PSYCOPG2_TESTDB_USER": ep.user,
        "PSYCOPG2_TESTDB_PASSWORD": ep.password,
        # Empty means "the normal DSN": the replication tests run instead of skipping.
        "PSYCOPG2_TEST_REPL_DSN": "",
        "PGSSLMODE": "require",
    }


def _asyncpg_env(ep: Endpoint) -> dict[str, str]:
    # asyncpg's test base uses a running server (RunningCluster) when PGHOST is set, and the
    # connection itself then reads the libpq variables.
    return {
        "PGHOST": ep.host,
        "PGPORT": str(ep.port),
        "PGUSER": ep.user,
        "PGPASSWORD": ep.password,
        "PGDATABASE": ep.dbname,
        "PGSSLMODE": "require",
    }


SUITES = {
    "psycopg2": Suite(
        "psycopg2", "psycopg2", ("psycopg2-binary", "psycopg2"), "psycopg2", "psycopg2",
        "psycopg2_test", ("hstore",), _psycopg2_env,
        "install it into the worktree venv: .venv/bin/pip install psycopg2-binary "
        "(bench-only; not a test extra)",
    ),
    "asyncpg": Suite(
        "asyncpg", "asyncpg", ("asyncpg",), "asyncpg", "discover", "asyncpg_test", ("hstore",),
        _asyncpg_env, "install it: .venv/bin/pip install asyncpg (a test extra of wardgate)",
        other_databases=("postgres", "testdb", "asyncpg_intro_test"), tests_only=True,
    ),
}


# -- the suite's files --------------------------------------------------------------------------

def driver_version(suite: Suite) -> str | None:
    try:
        __import__(suite.module)
    except ImportError:
        return None
    for dist in suite.distributions:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def fetch_tests(suite: Suite, version: str) -> Path:
    """The unpacked sdist of exactly the installed version (cached), with its tests/."""
    unpacked = CACHE / f"{suite.sdist}-{version}"
    if (unpacked / "tests").is_dir():
        return unpacked
    download = CACHE / "downloads"
    download.mkdir(parents=True, exist_ok=True)
    archive = next(download.glob(f"{suite.sdist}-{version}.tar.gz"), None)
    if archive is None:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
             f"{suite.sdist}=={version}", "-d", str(download)],
            check=True,
        )
        archive = download / f"{suite.sdist}-{version}.tar.gz"
    staging = Path(tempfile.mkdtemp(prefix="unpack-", dir=CACHE))
    with tarfile.open(archive) as tar:
        tar.extractall(staging, filter="data")
    top = staging / f"{suite.sdist}-{version}"
    if suite.tests_only:
        # Only tests/: the sdist's own package (uncompiled) must not shadow the installed one.
        keep = staging / "tests-only"
        keep.mkdir()
        shutil.move(str(top / "tests"), keep / "tests")
        top = keep
    shutil.rmtree(unpacked, ignore_errors=True)
    top.rename(unpacked)
    shutil.rmtree(staging, ignore_errors=True)
    return unpacked


# -- the servers ---------------------------------------------------------------------------------

def start_backend(suites: list[Suite]) -> tuple[PgCluster, str]:
    # Two-phase commit and logical replication are server settings the suites test when present.
    pg = PgCluster.start(settings={
        "max_prepared_transactions": "10",
        "wal_level": "logical",
        "max_wal_senders": "10",
        "max_replication_slots": "10",
    })
    password = secrets.token_hex(16)
    pg.sql(f"CREATE ROLE {ROLE} SUPERUSER LOGIN PASSWORD '{password}'", db="postgres")
    hba = pg.datadir / "pg_hba.conf"
    with hba.open("a") as f:  # the generic lines say "all", which never matches replication
        f.write(f"hostssl replication {ROLE} 127.0.0.1/32 scram-sha-256\n")
    pg.sql("SELECT pg_reload_conf()", db="postgres")
    for suite in suites:
        reset_database(pg, suite)
    return pg, password


def reset_database(pg: PgCluster, suite: Suite) -> None:
    """A fresh database for each run, so the second run never sees the first one's leftovers."""
    pg.sql("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE NOT active",
           db="postgres")
    # ROLLBACK PREPARED works only in the database the transaction was prepared in; a run whose
    # two-phase tests failed half-way leaves some behind, which DROP DATABASE would refuse.
    databases = pg.sql("SELECT DISTINCT database FROM pg_prepared_xacts", db="postgres")
    for db in filter(None, databases.splitlines()):
        pg.sql_script("SELECT format('ROLLBACK PREPARED %L', gid) FROM pg_prepared_xacts "
                      "WHERE database = current_database() \\gexec\n", db=db)
    # Databases the tests create themselves (asyncpg_intro_test) are left behind by a run whose
    # tearDownClass failed; the next run's setUpClass would then fail on "already exists".
    for name in (suite.database, *suite.other_databases):
        if name != "postgres":
            pg.sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", db="postgres")
    pg.sql(f"CREATE DATABASE {suite.database} OWNER {ROLE}", db="postgres")
    for ext in suite.extensions:
        pg.sql(f"CREATE EXTENSION IF NOT EXISTS {ext}", db=suite.database)


def shipped_columns() -> list[str]:
    """The column globs of the shipped conf.d, so ``--columns`` tests what an operator gets."""
    import tomllib

    with (ROOT / "conf.d" / "60-masking.toml").open("rb") as f:
        return list(tomllib.load(f)["masking"]["columns"])


def start_wardgate(work: Path, pg: PgCluster, password: str, suites: list[Suite],
                   columns: list[str]) -> GatewayProcess:
    names = dict.fromkeys(name for s in suites for name in (s.database, *s.other_databases))
    targets = "".join(textwrap.dedent(f"""
        [targets.{name}]
        protocol = "postgres"
        address = "127.0.0.1:{pg.port}"
        database = "{name}"
        user = "{ROLE}"
        password = "{password}"
        tls = "verify-full"
        ca_file = "{pg.ca_file}"
        """) for name in names)
    gw = start_gateway(work / "gateway", pg, rules=RULES, extra_toml=targets + textwrap.dedent(f"""
        [masking]
        detectors = ["credit_card", "us_ssn", "email", "iban", "secrets"]
        columns = {json.dumps(columns)}

        [limits]
        max_connections = 1000
        max_sessions_per_identity = 1000
        """))
    # Started again with -vv on the same configuration: at debug level the gateway logs the
    # traceback of an exception that escapes a connection, which is what the report is for.
    gw.stop()
    gw.log_file.write_text("")
    gw.process = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "-vv", "-c", str(gw.config_dir), "serve"],
        stdout=gw.log_file.open("ab"), stderr=subprocess.STDOUT, env=gw.env, cwd=ROOT,
    )
    deadline = time.monotonic() + 30
    while f"on 127.0.0.1:{gw.port}" not in gw.log():
        if gw.process.poll() is not None or time.monotonic() > deadline:
            gw.stop()
            raise RuntimeError(f"the gateway did not start again:\n{gw.log()}")
        time.sleep(0.05)
    return gw


# -- running a suite -----------------------------------------------------------------------------

@dataclass
class Run:
    label: str
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0
    restarts: int = 0
    aborted: str = ""  # why the suite could not run at all

    def counts(self) -> dict[str, int]:
        c = Counter(r["outcome"] for r in self.results.values())
        return {
            "run": len(self.results),
            "passed": c["pass"] + c["xfail"],
            "failed": c["fail"],
            "errors": c["error"] + c["hung"] + c["crashed"],
            "skipped": c["skip"],
        }


def run_suite(suite: Suite, sdist: Path, ep: Endpoint, label: str, outdir: Path, *,
              test_timeout: float, only: str = "", include: set[str] | None = None) -> Run:
    """Run the suite in a child process; restart it past a test that hangs or kills it."""
    run = Run(label)
    jsonl = outdir / f"{suite.name}-{label}.jsonl"
    log = outdir / f"{suite.name}-{label}.log"
    exclude = outdir / f"{suite.name}-{label}.exclude"
    jsonl.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "PSYCOPG2", "WARDGATE"))}
    env.update(suite.env(ep))
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    began = time.monotonic()
    offset = 0
    started: dict[str, float] = {}  # wall-clock start of each test, to match recordings to tests
    while True:
        exclude.write_text("\n".join(run.results) + "\n")
        argv = [sys.executable, str(CHILD), "--root", str(sdist), "--loader", suite.loader,
                "--out", str(jsonl), "--exclude", str(exclude), "--only", only]
        if include is not None:
            inc = outdir / f"{suite.name}-{label}.include"
            inc.write_text("\n".join(sorted(include)) + "\n")
            argv += ["--include", str(inc)]
        with log.open("a") as out:
            child = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env,
                                     stdin=subprocess.DEVNULL)
            current: str | None = None
            last = time.monotonic()
            finished = False
            before = len(run.results)
            while True:
                rc = child.poll()
                offset, events = _read_events(jsonl, offset)
                for ev in events:
                    last = time.monotonic()
                    if ev["event"] == "start":
                        current = ev["id"]
                        started[current] = ev["t"]
                    elif ev["event"] == "end":
                        ev["started"] = started.get(ev["id"], 0.0)
                        run.results.setdefault(ev["id"], ev)
                        current = None
                    elif ev["event"] == "done":
                        finished = True
                if rc is not None:
                    break
                if time.monotonic() - last > test_timeout:
                    child.kill()
                    child.wait()
                    if current is not None:
                        run.results[current] = {"id": current, "outcome": "hung", "error": "hung",
                                                "started": started.get(current, 0.0),
                                                "message": f"no result within {test_timeout:.0f} s",
                                                "seconds": test_timeout}
                    break
                time.sleep(0.2)
        if finished:
            break
        if current is not None and current not in run.results:
            run.results[current] = {"id": current, "outcome": "crashed", "error": "crashed",
                                    "started": started.get(current, 0.0),
                                    "message": f"the test process died (exit {child.returncode})",
                                    "seconds": 0}
        if len(run.results) == before:
            run.aborted = f"the suite did not start (exit {child.returncode}); see {log}"
            break
        run.restarts += 1
    run.seconds = time.monotonic() - began
    return run


def _read_events(path: Path, offset: int) -> tuple[int, list[dict[str, Any]]]:
    if not path.exists():
        return offset, []
    with path.open("rb") as f:
        f.seek(offset)
        chunk = f.read()
    complete = chunk[: chunk.rfind(b"\n") + 1]  # a line still being written is read next time
    events = [json.loads(line) for line in complete.splitlines() if line.strip()]
    return offset + len(complete), events


# -- the report ----------------------------------------------------------------------------------

def cause_key(result: dict[str, Any]) -> str:
    """Error class + first line of the message, numbers folded so pids and oids do not split a group."""
    message = re.sub(r"\d+", "N", result.get("message", ""))
    return f"{result.get('error', '?')}: {message}"


@dataclass
class Comparison:
    gateway_only: dict[str, dict[str, Any]]  # test id -> the gateway run's result
    skipped_only_through_gateway: dict[str, dict[str, Any]]
    both_failed: list[str]
    direct_only: list[str]

    @staticmethod
    def of(direct: Run, via: Run) -> Comparison:
        gw_only, skipped, both, direct_only = {}, {}, [], []
        for test_id, d in direct.results.items():
            g = via.results.get(test_id)
            if g is None:
                continue
            if d["outcome"] in PASSED and g["outcome"] in FAILED:
                gw_only[test_id] = g
            elif d["outcome"] in PASSED and g["outcome"] == "skip":
                skipped[test_id] = g
            elif d["outcome"] in FAILED and g["outcome"] in FAILED:
                both.append(test_id)
            elif d["outcome"] in FAILED and g["outcome"] in PASSED:
                direct_only.append(test_id)
        # Class and module fixtures (``setUpClass (...)``, ``tearDownClass (...)``) are results
        # only when they fail: one that fails only through the gateway has no direct twin.
        for test_id, g in via.results.items():
            if test_id not in direct.results and g["outcome"] in FAILED:
                gw_only[test_id] = g
        return Comparison(gw_only, skipped, sorted(both), sorted(direct_only))


_FIXTURE = re.compile(r"\w+ \((.+)\)")  # unittest's id of a class or module fixture


def _fixture_tests(test_id: str, run: Run) -> list[str]:
    """The tests of the class a fixture id (``tearDownClass (tests.m.Class)``) names."""
    found = _FIXTURE.fullmatch(test_id)
    if found is None:
        return []
    return [t for t in run.results if t.startswith(found.group(1) + ".")]


def grouped(results: dict[str, dict[str, Any]]) -> list[tuple[str, list[str]]]:
    groups: dict[str, list[str]] = defaultdict(list)
    for test_id, r in results.items():
        groups[cause_key(r)].append(test_id)
    return sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))


def print_report(suite: Suite, version: str, runs: list[Run], cmp: Comparison,
                 recheck: dict[str, str] | None, *, show: int) -> None:
    print(f"\n== {suite.name} {version}: its own test suite, directly and through wardgate ==")
    print(f"{'run':10} {'tests':>6} {'passed':>7} {'failed':>7} {'errors':>7} {'skipped':>8} {'wall s':>8}")
    for run in runs:
        c = run.counts()
        note = f"  ({run.restarts} restarts past hung/crashed tests)" if run.restarts else ""
        if run.aborted:
            note += f"  ABORTED: {run.aborted}"
        print(f"{run.label:10} {c['run']:>6} {c['passed']:>7} {c['failed']:>7} {c['errors']:>7} "
              f"{c['skipped']:>8} {run.seconds:>8.1f}{note}")
    groups = grouped(cmp.gateway_only)
    print(f"\nFail only through wardgate: {len(cmp.gateway_only)} tests, {len(groups)} causes")
    for cause, ids in groups:
        print(f"  [{len(ids):>3}] {cause}")
        for test_id in sorted(ids)[:show]:
            tag = f"  ({recheck[test_id]} on recheck)" if recheck and test_id in recheck else ""
            print(f"          {test_id}{tag}")
        if len(ids) > show:
            print(f"          ... and {len(ids) - show} more")
    if cmp.skipped_only_through_gateway:
        skipped = grouped(cmp.skipped_only_through_gateway)
        print(f"\nPass directly, skipped through wardgate: {len(cmp.skipped_only_through_gateway)} tests")
        for cause, ids in skipped:
            print(f"  [{len(ids):>3}] {cause}")
    print(f"\nFail in both runs (not the gateway's doing): {len(cmp.both_failed)}")
    for test_id in cmp.both_failed[:show]:
        print(f"          {test_id}")
    if cmp.direct_only:
        print(f"Fail only directly (flaky?): {len(cmp.direct_only)}: {', '.join(cmp.direct_only[:show])}")
    if recheck:
        again = sum(1 for v in recheck.values() if v == "failed again")
        print(f"Recheck of the gateway-only failures (each run once more, directly and through "
              f"wardgate): {again} of {len(recheck)} failed again through wardgate only")


# -- main ----------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", choices=(*SUITES, "all"), default="psycopg2")
    parser.add_argument("--only", default="", help="run only test ids containing this text")
    parser.add_argument("--test-timeout", type=float, default=90.0,
                        help="seconds without a result before a test counts as hung (90)")
    parser.add_argument("--no-recheck", action="store_true",
                        help="do not run the gateway-only failures a second time")
    parser.add_argument("--show", type=int, default=8, help="test ids listed per cause (8)")
    parser.add_argument("--keep-recordings", action="store_true")
    parser.add_argument("--columns", nargs="?", const="shipped", default="",
                        help="mask columns by name too: alone, the globs of the shipped "
                             "conf.d/60-masking.toml; or comma-separated globs (default: none)")
    args = parser.parse_args()

    columns = (shipped_columns() if args.columns == "shipped"
               else [g.strip() for g in args.columns.split(",") if g.strip()])
    wanted = list(SUITES.values()) if args.suite == "all" else [SUITES[args.suite]]
    suites: list[tuple[Suite, str, Path]] = []
    for suite in wanted:
        version = driver_version(suite)
        if version is None:
            print(f"{suite.name} is not installed: {suite.install_hint}", file=sys.stderr)
            continue
        if suite.name == "asyncpg" and importlib.util.find_spec("distro") is None:
            print("note: asyncpg's tests/test_connect.py imports distro; without it that module "
                  "fails to load in both runs (.venv/bin/pip install distro)", file=sys.stderr)
        suites.append((suite, version, fetch_tests(suite, version)))
    if not suites:
        return 2

    outdir = Path(tempfile.mkdtemp(prefix="wardgate-compat-"))
    pg, password = start_backend([s for s, _, _ in suites])
    gw: GatewayProcess | None = None
    summary: dict[str, Any] = {}
    try:
        gw = start_wardgate(outdir, pg, password, [s for s, _, _ in suites], columns)
        print(f"masking columns: {columns or 'none'}", flush=True)
        token = gw.token(ROLE, groups=GROUP, ttl="4h")
        for suite, version, sdist in suites:
            direct_ep = Endpoint("127.0.0.1", pg.port, suite.database, ROLE, password)
            gateway_ep = Endpoint("127.0.0.1", gw.port, suite.database, ROLE, token)
            runs = []
            recorded = RecordingSummary()
            for label, ep in (("direct", direct_ep), ("wardgate", gateway_ep)):
                reset_database(pg, suite)
                print(f"running {suite.name} {version} {label} ...", flush=True)
                before = set(gw.recordings())
                runs.append(run_suite(suite, sdist, ep, label, outdir,
                                      test_timeout=args.test_timeout, only=args.only))
                if gw.process.poll() is not None:
                    print(f"the gateway process exited ({gw.process.returncode}); see {gw.log_file}")
                    return 0
                if label == "wardgate":
                    time.sleep(1.5)  # sessions still closing write their end records
                    spans = [(r["started"], r["started"] + r.get("seconds", 0), r["id"])
                             for r in runs[-1].results.values() if r.get("started")]
                    recorded = summarise((p for p in gw.recordings() if p not in before), spans)
            cmp = Comparison.of(*runs)
            recheck: dict[str, str] | None = None
            if cmp.gateway_only and not args.no_recheck:
                again = set(cmp.gateway_only)
                # A failing class fixture runs again only with tests of its class.
                include = again | {t for f in again for t in _fixture_tests(f, runs[0])}
                reset_database(pg, suite)
                d2 = run_suite(suite, sdist, direct_ep, "direct-recheck", outdir,
                               test_timeout=args.test_timeout, include=include)
                reset_database(pg, suite)
                g2 = run_suite(suite, sdist, gateway_ep, "wardgate-recheck", outdir,
                               test_timeout=args.test_timeout, include=include)
                recheck = {}
                for test_id in again:
                    # A fixture that passes leaves no result: silence is its pass.
                    quiet = {"outcome": "pass"} if _FIXTURE.fullmatch(test_id) else {}
                    d, g = d2.results.get(test_id, quiet), g2.results.get(test_id, quiet)
                    recheck[test_id] = ("failed again" if d.get("outcome") in PASSED
                                        and g.get("outcome") in FAILED else
                                        f"direct {d.get('outcome')}, wardgate {g.get('outcome')}")
            print_report(suite, version, runs, cmp, recheck, show=args.show)
            print_summary(recorded, show=args.show)
            summary[suite.name] = {
                "version": version,
                "columns": columns,
                "runs": {r.label: {**r.counts(), "seconds": round(r.seconds, 1),
                                   "restarts": r.restarts, "aborted": r.aborted} for r in runs},
                "gateway_only": {k: [t for t in v] for k, v in grouped(cmp.gateway_only)},
                "skipped_only_through_gateway": sorted(cmp.skipped_only_through_gateway),
                "both_failed": cmp.both_failed,
                "direct_only": cmp.direct_only,
                "recheck": recheck,
                "recordings": recorded.to_json(),
            }
    finally:
        if gw is not None:
            gw.stop()
            shutil.copy(gw.log_file, outdir / "gateway.log")
            if not args.keep_recordings:
                shutil.rmtree(gw.root / "var" / "recordings", ignore_errors=True)
        pg.stop()
        (outdir / "report.json").write_text(json.dumps(summary, indent=1))
    print(f"\nper-test results, tracebacks, child and gateway logs: {outdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
