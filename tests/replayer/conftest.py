"""Fixtures for the replayer tests.

Textual runs on asyncio, while the suite runs with pytest-trio's ``trio_mode = true``: every
``async def`` test would be handed to trio. So the replayer's tests are plain functions that
drive the app with ``asyncio.run`` (see ``run_app``), and snapshot tests use the synchronous
``snap_compare`` fixture of pytest-textual-snapshot.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from textual.pilot import Pilot

from replayer.app import ReplayApp
from replayer.index import SessionIndex
from tests.replayer.make_golden import FILES, PUBLIC_KEY_PATH, VERSION_DIR

DAY = "2026-01-01"
SIZE = (140, 40)


def golden(name: str) -> Path:
    """A committed golden recording by its short name (see make_golden.FILES)."""
    return VERSION_DIR / FILES[name]


@pytest.fixture(scope="session")
def public_key() -> Ed25519PublicKey:
    key = load_pem_public_key(PUBLIC_KEY_PATH.read_bytes())
    assert isinstance(key, Ed25519PublicKey)
    return key


@pytest.fixture
def recordings(tmp_path: Path) -> Path:
    """The golden files in the gateway's store layout: root/YYYY-MM-DD/<name>.wgrec."""
    root = tmp_path / "recordings"
    (root / DAY).mkdir(parents=True)
    for name in FILES:
        shutil.copy(golden(name), root / DAY / FILES[name])
    return root


@pytest.fixture
def make_app(
    tmp_path: Path, public_key: Ed25519PublicKey, recordings: Path
) -> Iterator[Callable[..., ReplayApp]]:
    indexes: list[SessionIndex] = []

    def factory(root: Path | None = None, **kwargs: Any) -> ReplayApp:
        index = kwargs.pop("index", None) or SessionIndex(tmp_path / "index.sqlite3")
        indexes.append(index)
        kwargs.setdefault("public_key", public_key)
        kwargs.setdefault("export_dir", tmp_path / "exports")
        kwargs.setdefault("blink", False)
        return ReplayApp(root or recordings, index=index, **kwargs)

    yield factory
    for index in indexes:
        index.close()


async def settle(pilot: Pilot[Any]) -> None:
    """Wait until background work (indexing, loading a session) is done and shown."""
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def run_app(app: ReplayApp, scenario: Callable[[Pilot[Any]], Awaitable[None]],
            size: tuple[int, int] = SIZE) -> None:
    """Run ``scenario`` against ``app`` under asyncio (not trio: see the module docstring)."""

    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await settle(pilot)
            await scenario(pilot)

    asyncio.run(main())
