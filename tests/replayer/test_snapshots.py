"""Snapshots of the main screens over the golden recordings (pytest-textual-snapshot).

Update them after an intended change of the UI (or of Textual) with
``pytest tests/replayer/test_snapshots.py --snapshot-update`` and review the SVGs. The
recordings directory is passed as a relative path so the title holds no temporary path, and
cursor blink is off (``blink=False``), so a snapshot is the same on every run.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from replayer.app import ReplayApp
from tests.replayer.conftest import DAY, SIZE, settle
from tests.replayer.make_golden import FILES

AppFactory = Callable[..., ReplayApp]
Snap = Callable[..., bool]


@pytest.fixture
def relative_root(tmp_path: Path, recordings: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return recordings.relative_to(tmp_path)


def session_app(make_app: AppFactory, root: Path, name: str) -> ReplayApp:
    return make_app(root=root, open_path=root / DAY / FILES[name])


def presses(*keys: str) -> Callable[[Pilot[Any]], Any]:
    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.press(*keys)
        await pilot.pause()

    return run_before


def test_browser(snap_compare: Snap, make_app: AppFactory, relative_root: Path) -> None:
    assert snap_compare(make_app(root=relative_root), terminal_size=SIZE, run_before=presses())


def test_sql_session_at_an_approved_statement(
    snap_compare: Snap, make_app: AppFactory, relative_root: Path
) -> None:
    app = session_app(make_app, relative_root, "postgres")
    assert snap_compare(app, terminal_size=SIZE, run_before=presses("n", "n"))


def test_terminal_session_at_hostile_output(
    snap_compare: Snap, make_app: AppFactory, relative_root: Path
) -> None:
    app = session_app(make_app, relative_root, "ssh")
    assert snap_compare(app, terminal_size=SIZE, run_before=presses("n", "n", "full_stop"))


def test_http_session(snap_compare: Snap, make_app: AppFactory, relative_root: Path) -> None:
    app = session_app(make_app, relative_root, "http")
    assert snap_compare(app, terminal_size=SIZE, run_before=presses())


def test_hostile_values_session(
    snap_compare: Snap, make_app: AppFactory, relative_root: Path
) -> None:
    app = session_app(make_app, relative_root, "hostile")
    assert snap_compare(app, terminal_size=SIZE, run_before=presses("full_stop"))
