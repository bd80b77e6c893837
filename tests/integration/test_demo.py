"""`wardgate demo` tells the whole story in one command, with a real PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
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
