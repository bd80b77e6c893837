#!/usr/bin/env python3
"""PostgreSQL through wardgate, beside direct access and PgBouncer, in one run, as ratios.

    .venv/bin/python bench/pg_bench.py [--seconds 5] [--repeat 3] [--idle-sessions 1000]

Starts a private PostgreSQL cluster, a PgBouncer (Debian package, installed when missing) and the
real gateway (TLS to the client, policy, masking and recording all on), then runs pgbench
select-only with 1 and 8 clients in simple and extended protocol against each, interleaved so
machine noise hits all three alike, and prints medians and ratios. Then it opens N idle
authenticated sessions through the gateway and reports its resident memory.

Every client connection uses TLS (sslmode=require) in all three setups; the gateway and
PgBouncer reach the backend in plaintext, so the three compare like with like.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.gateway import start_gateway  # noqa: E402
from tests.support.pgcluster import PgCluster  # noqa: E402
from tests.support.ports import free_port  # noqa: E402
from tests.support.rawpg import login  # noqa: E402

RULES = '[[rules]]\nname = "bench"\ngroups = ["bench"]\naction = "allow"\n'


def ensure_pgbouncer() -> str:
    found = shutil.which("pgbouncer") or (Path("/usr/sbin/pgbouncer").exists() and "/usr/sbin/pgbouncer")
    if not found:
        subprocess.run(["apt-get", "install", "-y", "-qq", "pgbouncer"], check=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        found = "/usr/sbin/pgbouncer"
    return str(found)


def start_pgbouncer(pg: PgCluster, binary: str) -> tuple[subprocess.Popen[bytes], int]:
    work = Path(tempfile.mkdtemp(prefix="wardgate-bouncer-"))
    os.chmod(work, 0o755)
    port = free_port()
    (work / "userlist.txt").write_text(f'"{pg.reader_user}" "{pg.reader_password}"\n')
    (work / "pgbouncer.ini").write_text(textwrap.dedent(f"""
        [databases]
        app = host=127.0.0.1 port={pg.port} dbname=app
        [pgbouncer]
        listen_addr = 127.0.0.1
        listen_port = {port}
        unix_socket_dir =
        auth_type = scram-sha-256
        auth_file = {work}/userlist.txt
        pool_mode = session
        max_client_conn = 200
        default_pool_size = 20
        client_tls_sslmode = require
        client_tls_cert_file = {pg.datadir}/server.crt
        client_tls_key_file = {pg.datadir}/server.key
        server_tls_sslmode = disable
        logfile = {work}/pgbouncer.log
        """))
    for f in [work, *work.iterdir()]:
        shutil.chown(f, "postgres", "postgres")
    cmd = [binary, str(work / "pgbouncer.ini")]
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=(work / "stderr.txt").open("wb"))
    for _ in range(100):
        if subprocess.run(["pg_isready", "-h", "127.0.0.1", "-p", str(port)], capture_output=True).returncode == 0:
            return proc, port
        time.sleep(0.1)
    logs = [p.read_text(errors="replace") for p in (work / "pgbouncer.log", work / "stderr.txt") if p.exists()]
    raise RuntimeError("pgbouncer did not start:\n" + "\n".join(logs))


def pgbench(port: int, user: str, password: str, db: str, *, clients: int, mode: str, seconds: int) -> tuple[float, float]:
    env = dict(os.environ, PGPASSWORD=password, PGSSLMODE="require")
    r = subprocess.run(
        ["pgbench", "-h", "127.0.0.1", "-p", str(port), "-U", user, "-n", "-S", "-M", mode,
         "-c", str(clients), "-j", str(min(clients, 2)), "-T", str(seconds), db],
        capture_output=True, text=True, env=env, timeout=seconds * 10 + 60,
    )
    if r.returncode != 0:
        raise RuntimeError(f"pgbench on port {port} failed:\n{r.stdout}\n{r.stderr}")
    tps = float(re.search(r"tps = ([\d.]+) \(without initial", r.stdout).group(1))  # type: ignore[union-attr]
    latency = float(re.search(r"latency average = ([\d.]+) ms", r.stdout).group(1))  # type: ignore[union-attr]
    return tps, latency


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--idle-sessions", type=int, default=1000)
    args = parser.parse_args()

    bouncer_bin = ensure_pgbouncer()
    pg = PgCluster.start(settings={"max_connections": str(args.idle_sessions + 100)})
    work = Path(tempfile.mkdtemp(prefix="wardgate-bench-"))
    gw = start_gateway(work / "gw", pg, rules=RULES, extra_toml=textwrap.dedent(f"""
        [targets.pg-bench]
        protocol = "postgres"
        address = "127.0.0.1:{pg.port}"
        database = "app"
        user = "{pg.reader_user}"
        password = "{pg.reader_password}"
        tls = "disable"

        [limits]
        max_connections = {args.idle_sessions + 200}
        max_sessions_per_identity = {args.idle_sessions + 200}
        """))
    bouncer, bouncer_port = start_pgbouncer(pg, bouncer_bin)
    pump_port = free_port()
    pump = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "pg_pump.py"), str(pump_port), str(pg.port),
         str(gw.root / "var" / "tls" / "gateway.crt"), str(gw.root / "var" / "tls" / "gateway.key")],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert pump.stdout is not None and pump.stdout.readline().strip() == b"pump ready"
    token = gw.token("bench", groups="bench", ttl="2h")
    setups = {
        "direct": (pg.port, pg.reader_user, pg.reader_password, "app"),
        "pgbouncer": (bouncer_port, pg.reader_user, pg.reader_password, "app"),
        "trio-pump": (pump_port, pg.reader_user, pg.reader_password, "app"),
        "wardgate": (gw.port, "bench", token, "pg-bench"),
    }
    try:
        results: dict[tuple[str, int, str], list[tuple[float, float]]] = {}
        for mode in ("simple", "extended"):
            for clients in (1, 8):
                for _ in range(args.repeat):
                    for name, (port, user, password, db) in setups.items():
                        results.setdefault((name, clients, mode), []).append(
                            pgbench(port, user, password, db, clients=clients, mode=mode, seconds=args.seconds))
        print(f"\npgbench -S, {args.seconds} s per run, median of {args.repeat} runs, TLS to the client everywhere")
        print(f"{'mode':9} {'clients':>7} {'setup':10} {'tps':>10} {'latency ms':>11}")
        for mode in ("simple", "extended"):
            for clients in (1, 8):
                med: dict[str, tuple[float, float]] = {}
                for name in setups:
                    runs = results[(name, clients, mode)]
                    med[name] = (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))
                    print(f"{mode:9} {clients:>7} {name:10} {med[name][0]:>10.0f} {med[name][1]:>11.3f}")
                w, b, d, p = med["wardgate"], med["pgbouncer"], med["direct"], med["trio-pump"]
                print(f"{'':18} wardgate/pgbouncer tps {w[0] / b[0]:.2f}x (bare trio pump: {p[0] / b[0]:.2f}x), "
                      f"wardgate/direct tps {w[0] / d[0]:.2f}x, added latency over direct {(w[1] - d[1]) * 1000:.0f} us")
        pid = gw.process.pid
        before = rss_kib(pid)
        conns = []
        started = time.monotonic()
        for _ in range(args.idle_sessions):
            conns.append(login(gw.port, token, target="pg-bench"))
        opened = time.monotonic() - started
        time.sleep(1)
        after = rss_kib(pid)
        print(f"\n{args.idle_sessions} idle authenticated sessions (opened in {opened:.1f} s): "
              f"gateway RSS {after / 1024:.0f} MiB (idle gateway: {before / 1024:.0f} MiB, "
              f"{(after - before) / max(args.idle_sessions, 1):.0f} KiB per session)")
        for c in conns:
            c.close()
    finally:
        bouncer.terminate()
        pump.terminate()
        gw.stop()
        pg.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
