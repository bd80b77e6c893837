"""Registers the PostgreSQL connector through the ``wardgate`` entry points, like any plugin."""

from __future__ import annotations

from gateway.hookspecs import hookimpl

from .connector import PostgresConnector


@hookimpl
def wardgate_connectors() -> list[PostgresConnector]:
    return [PostgresConnector()]
