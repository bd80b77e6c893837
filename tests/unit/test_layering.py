"""Dependencies point one way (DESIGN.md): checked, not hoped for."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imports(package: str) -> list[tuple[Path, str]]:
    found: list[tuple[Path, str]] = []
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found.extend((path, alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.extend((path, f"{node.module}.{alias.name}") for alias in node.names)
    return found


def test_gateway_never_imports_a_connector_plugin_or_the_replayer() -> None:
    bad = [
        (str(p.relative_to(ROOT)), name)
        for p, name in _imports("gateway")
        if name.split(".")[0] in {"connectors", "plugins", "replayer"}
    ]
    assert bad == []


def test_replayer_reads_recordings_only_through_the_reader() -> None:
    bad = [
        (str(p.relative_to(ROOT)), name)
        for p, name in _imports("replayer")
        if name.split(".")[0] in {"gateway", "connectors", "plugins"}
        and not name.startswith("gateway.recording.reader")
    ]
    assert bad == []


def test_recording_reader_imports_nothing_of_the_running_gateway() -> None:
    # The replayer imports the reader; the reader must not drag the writer or the core in.
    path = ROOT / "gateway" / "recording" / "reader.py"
    tree = ast.parse(path.read_text())
    modules = {
        node.module for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
    } | {
        alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    internal = {m for m in modules if m.split(".")[0] == "gateway"}
    assert internal <= {"gateway.recording.format", "gateway.errors", "gateway.recording"}


def test_import_linter_contracts_hold() -> None:
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint, "import-linter is a test dependency (pip install -e '.[test]')"
    result = subprocess.run([lint], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
