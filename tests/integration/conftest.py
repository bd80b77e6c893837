"""Fixtures that start real servers for integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.gateway import GatewayProcess, start_gateway
from tests.support.pgcluster import PgCluster


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Marked by fixture use rather than by hand, so `-m "not integration"` can never run a test
    # that would start a server just because someone forgot the decorator.
    for item in items:
        if "pg_cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """One private PostgreSQL cluster for the whole session, started on first use.

    A plain sync fixture: pytest-trio's trio_mode only drives async fixtures, and a session-scoped
    async one would need a trio run that outlives every test. Tests must leave the seeded data as
    they found it (or use their own tables), since the cluster is shared.
    """
    cluster = PgCluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def gateway(pg_cluster: PgCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """One real ``wardgate serve`` in front of the private cluster, shared by the session."""
    gw = start_gateway(tmp_path_factory.mktemp("wardgate"), pg_cluster)
    try:
        yield gw
    finally:
        gw.stop()
