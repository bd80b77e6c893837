"""The README's quick start, run as written: every command of its code blocks, in order, against
the shipped conf.d (copied; only the target's address, the listener ports and nothing else
changed) and a private PostgreSQL cluster standing in for the machine's server on 5432.

The commands are read from README.md, so editing the quick start without this test fails it: each
command must match the step expected at its place, and each step must have its command. What a
stranger would type is typed: ``sudo -u postgres psql`` reaches the private cluster's superuser
through a ``sudo`` stand-in first on PATH, ``.venv/bin/wardgate`` is this checkout's, and the
placeholders the README explains (REVIEW_ID, GRANT_ID, FILE) are filled in from what the earlier
commands printed, as the reader would.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.pgcluster import PgCluster
from tests.support.ports import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
TERMINAL = re.compile(r"#\s*terminal\s+(\d+)")


# --- reading the README ----------------------------------------------------------------------


@dataclass
class Command:
    terminal: str
    text: str  # one shell command, continuation lines and here-documents included
    stdin: str | None = None  # a ```sql block typed at this psql's prompt


def quick_start_section(readme: str) -> str:
    start = readme.index("\n## Quick start\n")
    end = readme.index("\n## ", start + 1)
    return readme[start:end]


def _blocks(section: str) -> Iterator[tuple[str, str]]:
    for match in re.finditer(r"^```(\w*)\n(.*?)^```$", section, re.DOTALL | re.MULTILINE):
        yield match.group(1), match.group(2)


def _commands(body: str) -> Iterator[str]:
    """Shell commands of a block: comment lines dropped, ``\\`` continuations and
    here-documents kept with their command."""
    lines = body.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        command = [line]
        while command[-1].endswith("\\") and i < len(lines):
            command.append(lines[i])
            i += 1
        heredoc = re.search(r"<<-?'?(\w+)'?", command[-1])
        if heredoc:
            while i < len(lines):
                command.append(lines[i])
                i += 1
                if command[-1] == heredoc.group(1):
                    break
        yield "\n".join(command)


def quick_start_commands(readme: str) -> list[Command]:
    commands: list[Command] = []
    terminal = None
    for language, body in _blocks(quick_start_section(readme)):
        if language == "sql":
            assert commands and commands[-1].stdin is None, "a sql block follows a psql command"
            commands[-1].stdin = body
            continue
        assert language == "sh", f"quick start block of language {language!r}"
        named = TERMINAL.search(body.splitlines()[0]) if body.strip() else None
        assert named, f"every quick start block says its terminal first:\n{body}"
        terminal = named.group(1)
        commands += [Command(terminal, text) for text in _commands(body)]
    return commands


def test_the_reader_splits_commands_as_a_shell_would() -> None:
    readme = (
        "\n## Quick start\n```sh\n# terminal 1: x\nexport A=1   # why\n"
        "cat <<'EOF'\nline \\\nEOF\npsql \\\n  -c 'x'\n```\n```sql\nSELECT 1;\n```\n"
        "```sh\n# terminal 2\nls\n```\n## Next\n```sh\n# terminal 9\nnot this\n```\n"
    )
    assert quick_start_commands(readme) == [
        Command("1", "export A=1   # why"),
        Command("1", "cat <<'EOF'\nline \\\nEOF"),
        Command("1", "psql \\\n  -c 'x'", stdin="SELECT 1;\n"),
        Command("2", "ls"),
    ]


# --- running them ----------------------------------------------------------------------------


def _shell_env(shim_dir: Path) -> dict[str, str]:
    # A developer's PGHOST/PGPORT or WARDGATE_* must not steer the commands anywhere else.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "WARDGATE"))}
    env["PATH"] = f"{shim_dir}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
    env["LC_ALL"] = "C"
    return env


@dataclass
class Terminal:
    """One of the reader's terminals: a directory to start in and the variables exported so far
    (each command runs in a fresh bash that loads and then saves them)."""

    name: str
    cwd: Path
    env: dict[str, str]
    state: Path

    def script(self, command: str) -> str:
        load = f"[ -f {shlex.quote(str(self.state))} ] && . {shlex.quote(str(self.state))}\n"
        save = f"\n__rc=$?; export -p > {shlex.quote(str(self.state))}; exit $__rc\n"
        return load + command + save

    def run(self, command: str, *, stdin: str | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", "-c", self.script(command)], input=stdin, text=True,
                              capture_output=True, cwd=self.cwd, env=self.env, timeout=timeout,
                              check=False)

    def start(self, command: str, *, stdin: str | None = None,
              output: Path) -> subprocess.Popen[str]:
        """A command that keeps running (the gateway, a psql waiting for an approval)."""
        sink = output.open("w")
        load = f"[ -f {shlex.quote(str(self.state))} ] && . {shlex.quote(str(self.state))}\n"
        # exec: the process is the command itself, so that Ctrl-C (SIGINT) reaches it.
        process = subprocess.Popen(["bash", "-c", f"{load}exec {command}"], text=True,
                                   stdin=subprocess.PIPE, stdout=sink, stderr=subprocess.STDOUT,
                                   cwd=self.cwd, env=self.env)
        assert process.stdin is not None
        process.stdin.write(stdin or "")
        process.stdin.close()
        return process

    def variable(self, name: str) -> str:
        result = self.run(f'printf %s "${name}"')
        return result.stdout


class EmptyCluster(PgCluster):
    """A private cluster holding nothing yet: the quick start creates the role and database."""

    def _seed(self) -> None:
        pass


@dataclass
class QuickStart:
    root: Path
    cluster: PgCluster
    listener_port: int
    admin_port: int
    terminals: dict[str, Terminal] = field(default_factory=dict)
    found: dict[str, str] = field(default_factory=dict)  # placeholders -> what was printed
    processes: list[subprocess.Popen[str]] = field(default_factory=list)
    gateway: subprocess.Popen[str] | None = None

    @property
    def gateway_log(self) -> Path:
        return self.root / "gateway.out"

    def terminal(self, name: str, env: dict[str, str]) -> Terminal:
        if name not in self.terminals:
            self.terminals[name] = Terminal(name, self.root, env, self.root / f"terminal-{name}.sh")
        return self.terminals[name]

    def as_typed(self, text: str) -> str:
        """The command with what the reader adapts: the listener port this test could bind,
        and the ids earlier commands printed."""
        text = text.replace("port=6432", f"port={self.listener_port}")
        for placeholder, value in self.found.items():
            text = re.sub(rf"\b{placeholder}\b", value, text)
        return text


def _copy_shipped_config(root: Path, cluster: PgCluster, listener: int, admin: int) -> None:
    shutil.copytree(ROOT / "conf.d", root / "conf.d")

    def substitute(name: str, old: str, new: str) -> None:
        path = root / "conf.d" / name
        text = path.read_text()
        assert text.count(old) == 1, f"the shipped {name} no longer holds {old!r}: update the test"
        path.write_text(text.replace(old, new))

    substitute("30-targets.toml", 'address = "127.0.0.1:5432"',
               f'address = "127.0.0.1:{cluster.port}"')
    substitute("20-listeners.toml", 'bind = "127.0.0.1:6432"', f'bind = "127.0.0.1:{listener}"')
    substitute("40-approvals.toml", 'bind = "127.0.0.1:8443"', f'bind = "127.0.0.1:{admin}"')
    # data_dir stays the shipped "var": relative to conf.d's parent, so inside this test's root.
    assert 'data_dir = "var"' in (root / "conf.d" / "10-gateway.toml").read_text()


def _sudo_stand_in(shim_dir: Path, cluster: PgCluster, used: Path) -> None:
    """``sudo -u postgres CMD``: CMD as the private cluster's superuser over its socket, so the
    machine's own server on 5432 is never touched."""
    shim_dir.mkdir()
    sudo = shim_dir / "sudo"
    sudo.write_text(
        "#!/bin/sh\n"
        '[ "$1" = "-u" ] && [ "$2" = "postgres" ] || { echo "unexpected: sudo $*" >&2; exit 97; }\n'
        "shift 2\n"
        f"echo \"$*\" >> {shlex.quote(str(used))}\n"
        f"exec env PGHOST={shlex.quote(str(cluster.socket_dir))} PGPORT={cluster.port} "
        'PGUSER=postgres "$@"\n'
    )
    sudo.chmod(0o755)


def _wait_for(predicate: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


# --- what each command must do ---------------------------------------------------------------

Check = Callable[[QuickStart, Terminal, Command], None]


def _ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def check_password_exported(qs: QuickStart, term: Terminal, cmd: Command) -> None:
    _ok(term.run(qs.as_typed(cmd.text)))
    assert term.variable("PG_DEMO_PASSWORD")


def check_database_created(qs: QuickStart, term: Terminal, cmd: Command) -> None:
    _ok(term.run(qs.as_typed(cmd.text), stdin=cmd.stdin))
    assert (qs.root / "sudo-used").read_text().startswith("psql ")  # the stand-in, not sudo
    assert qs.cluster.sql("SELECT count(*) FROM customers") == "2"
    assert qs.cluster.sql("SELECT rolcanlogin FROM pg_roles WHERE rolname = 'app_reader'") == "t"


def check_gateway_runs(qs: QuickStart, term: Terminal, cmd: Command) -> None:
    # `make run` is `$(VENV)/bin/wardgate serve` once the venv exists: run that recipe as is.
    recipe = re.search(r"^run: setup\n\t(.+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert recipe is not None and recipe.group(1) == "$(VENV)/bin/wardgate serve"
    qs.gateway = term.start(".venv/bin/wardgate serve", output=qs.gateway_log)
    qs.processes.append(qs.gateway)
    gateway = qs.gateway
    _wait_for(lambda: "admin API on https://" in qs.gateway_log.read_text()
              or gateway.poll() is not None, "the gateway to listen")
    log = qs.gateway_log.read_text()
    assert f"listener pg on 127.0.0.1:{qs.listener_port}" in log, log
    assert "PG_DEMO_PASSWORD is not set" not in log, log


def check_agent_token(qs: QuickStart, term: Terminal, cmd: Command) -> None:
    result = _ok(term.run(qs.as_typed(cmd.text)))
    assert re.fullmatch(r"[\w-]+\.[\w-]+\.[\w-]+", term.variable("PGPASSWORD")), result.stderr


def check_token_copied(qs: QuickStart, term: Terminal, cmd: Command) -> None:
    _ok(term.run(qs.as_typed(cmd.text)))
    assert term.variable("WARDGATE_TOKEN") == term.variable("PGPASSWORD")


def check_agent_session(qs: QuickStart, term: Terminal, cmd: Command) -> None:
    assert cmd.stdin is not None and "DELETE" in cmd.stdin
    qs.found["agent-session"] = str(qs.root / "agent-session.out")
    qs.processes.append(term.start(qs.as_typed(cmd.text), stdin=cmd.stdin,
                                   output=qs.root / "agent-session.out"))
    _wait_for(lambda: "waiting for approval of review" in (qs.root / "agent-session.out").read_text(),
              "the DELETE to be held")
    out = (qs.root / "agent-session.out").read_text()
    assert 'permission denied by wardgate rule "no ddl for agents"' in out
    assert ('a grant would allow it: wardgate access request --target "pg-demo" --grant write'
            in out)


def check_approver_token(qs: QuickStart, term: Terminal, cmd: Command) -> None:
    _ok(term.run(qs.as_typed(cmd.text)))
    assert term.variable("WARDGATE_TOKEN").count(".") == 2


def check_review_list(qs: QuickStart, term: Terminal, cmd: Command) -> None:
    held = "DELETE FROM customers WHERE name = 'Alan Turing';"
    listed = _ok(term.run(qs.as_typed(cmd.text))).stdout
    line = next(line for line in listed.splitlines() if held in line)
    assert " pending " in line and " alice " in line and " pg-demo " in line
    qs.found["REVIEW_ID"] = line.split()[0]


def check_review_approved(qs: QuickStart, term: Terminal, cmd: Command) -> None:
    out = _ok(term.run(qs.as_typed(cmd.text))).stdout
    assert f"review {qs.found['REVIEW_ID']}: approved" in out
    agent = qs.processes[-1]
    assert agent.wait(timeout=60) == 0
    session = Path(qs.found["agent-session"]).read_text()
    assert "DELETE 1" in session
    assert "Ada Lovelace | a***@example.com | ****-****-****-1111" in session, session
    assert "4111" not in session.replace("****-****-****-1111", "")
    assert "ada@example.com" not in session
    assert qs.cluster.sql("SELECT count(*) FROM customers") == "1"


def check_grant_requested(qs: QuickStart, term: Terminal, cmd: Command) -> None:
    out = _ok(term.run(qs.as_typed(cmd.text))).stdout
    assert re.search(r"grant \S+: pending \(grant write for 30m on pg-demo\)", out), out


def check_grant_listed(qs: QuickStart, term: Terminal, cmd: Command) -> None:
    listed = _ok(term.run(qs.as_typed(cmd.text))).stdout
    line = next(line for line in listed.splitlines() if " alice " in line)
    assert " pending " in line and " pg-demo " in line and "write" in line
    qs.found["GRANT_ID"] = line.split()[0]


def check_grant_approved(qs: QuickStart, term: Terminal, cmd: Command) -> None:
    out = _ok(term.run(qs.as_typed(cmd.text))).stdout
    assert f"grant {qs.found['GRANT_ID']}: approved" in out


def check_insert_runs(qs: QuickStart, term: Terminal, cmd: Command) -> None:
    assert "INSERT 0 1" in _ok(term.run(qs.as_typed(cmd.text))).stdout
    assert qs.cluster.sql("SELECT count(*) FROM customers WHERE name = 'Grace Hopper'") == "1"


def check_recordings_listed(qs: QuickStart, term: Terminal, cmd: Command) -> None:
    listed = _ok(term.run(qs.as_typed(cmd.text))).stdout.splitlines()
    assert len(listed) >= 2 and all(" verified " in line and " alice " in line for line in listed)
    qs.found["FILE"] = shlex.quote(listed[0].split()[-1])


def check_recording_verified(qs: QuickStart, term: Terminal, cmd: Command) -> None:
    assert "verified" in _ok(term.run(qs.as_typed(cmd.text))).stdout


# (terminal, the command as the README writes it, what it must do), in the README's order.
STEPS: list[tuple[str, str, Check]] = [
    ("1", r"export PG_DEMO_PASSWORD=\S+", check_password_exported),
    ("1", r"sudo -u postgres psql .*<<'SQL'\n(.*\n)*SQL", check_database_created),
    ("1", r"make run( .*)?", check_gateway_runs),
    ("2", r'export PGPASSWORD="\$\(\.venv/bin/wardgate token --sub alice --groups ai-agents .*\)"',
     check_agent_token),
    ("2", r'export WARDGATE_TOKEN="\$PGPASSWORD".*', check_token_copied),
    ("2", r'psql "host=127\.0\.0\.1 port=6432 dbname=pg-demo user=alice sslmode=require"',
     check_agent_session),
    ("3", r'export WARDGATE_TOKEN="\$\(\.venv/bin/wardgate token --sub bob --groups dba\)"',
     check_approver_token),
    ("3", r"\.venv/bin/wardgate review list", check_review_list),
    ("3", r"\.venv/bin/wardgate review approve REVIEW_ID .*", check_review_approved),
    ("2", r'\.venv/bin/wardgate access request --target pg-demo --grant write --for 30m .*',
     check_grant_requested),
    ("3", r"\.venv/bin/wardgate access list .*", check_grant_listed),
    ("3", r"\.venv/bin/wardgate access approve GRANT_ID .*", check_grant_approved),
    ("2", r'psql "host=127\.0\.0\.1 port=6432 [^"]*" \\\n\s+-c "INSERT .*"', check_insert_runs),
    ("3", r"\.venv/bin/wardgate recordings list", check_recordings_listed),
    ("3", r"\.venv/bin/wardgate recordings verify FILE", check_recording_verified),
]


def test_the_readme_quick_start_lists_exactly_the_commands_this_test_runs() -> None:
    commands = quick_start_commands(README.read_text())
    written = [(c.terminal, c.text) for c in commands]
    assert len(written) == len(STEPS), written
    for (terminal, text), (want_terminal, pattern, _) in zip(written, STEPS, strict=True):
        assert terminal == want_terminal and re.fullmatch(pattern, text), (terminal, text, pattern)


def test_the_readme_quick_start_works_as_written(tmp_path: Path) -> None:
    commands = quick_start_commands(README.read_text())
    assert len(commands) == len(STEPS)
    # The cluster's socket must be reachable by the postgres OS user: not under pytest's 0700.
    cluster = EmptyCluster.start()
    qs = QuickStart(tmp_path, cluster, free_port(), free_port())
    try:
        _copy_shipped_config(tmp_path, cluster, qs.listener_port, qs.admin_port)
        (tmp_path / ".venv" / "bin").mkdir(parents=True)
        (tmp_path / ".venv" / "bin" / "wardgate").symlink_to(Path(sys.executable).parent / "wardgate")
        _sudo_stand_in(tmp_path / "shims", cluster, tmp_path / "sudo-used")
        env = _shell_env(tmp_path / "shims")
        assert shutil.which("sudo", path=env["PATH"]) == str(tmp_path / "shims" / "sudo")
        for command, (terminal, _, check) in zip(commands, STEPS, strict=True):
            check(qs, qs.terminal(terminal, env), command)
        # Ctrl-C in terminal 1 stops the gateway.
        assert qs.gateway is not None
        qs.gateway.send_signal(signal.SIGINT)
        assert qs.gateway.wait(timeout=60) == 0, qs.gateway_log.read_text()
    finally:
        for process in qs.processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        cluster.stop()

