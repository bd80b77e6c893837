"""Registers the PostgreSQL connector through the ``wardgate`` entry points, like any plugin."""

from __future__ import annotations

from gateway.config import Config
from gateway.errors import PluginError
from gateway.hookspecs import hookimpl
from gateway.vocabulary import CommandVocabulary

from .connector import PostgresConnector
from .upstream import UpstreamError, target_search_path
from .vocabulary import postgres_vocabulary


@hookimpl
def wardgate_connectors() -> list[PostgresConnector]:
    return [PostgresConnector()]


@hookimpl
def wardgate_command_vocabulary() -> list[CommandVocabulary]:
    return [postgres_vocabulary()]


@hookimpl
def wardgate_configure(config: Config) -> None:
    """PostgreSQL targets' options are checked at start-up (and by ``config check``)."""
    for target in config.targets.values():
        if target.protocol != "postgres":
            continue
        where = f"{config.origin('targets', target.name) or 'configuration'}: " \
                f"[targets.{target.name}.options]"
        unknown = sorted(set(target.options) - {"search_path"})
        if unknown:
            raise PluginError(f"{where}: unknown key(s) {', '.join(unknown)}; PostgreSQL "
                              "targets know: search_path")
        try:
            target_search_path(target)
        except UpstreamError as exc:
            raise PluginError(f"{where}: {exc}") from exc
