"""Registers the PostgreSQL connector through the ``wardgate`` entry points, like any plugin."""

from __future__ import annotations

from gateway.hookspecs import hookimpl
from gateway.vocabulary import CommandVocabulary

from .connector import PostgresConnector
from .vocabulary import postgres_vocabulary


@hookimpl
def wardgate_connectors() -> list[PostgresConnector]:
    return [PostgresConnector()]


@hookimpl
def wardgate_command_vocabulary() -> list[CommandVocabulary]:
    return [postgres_vocabulary()]
