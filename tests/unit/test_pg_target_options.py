"""What the gateway sends a PostgreSQL target at start-up, and the targets' own options."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.postgres.plugin import wardgate_configure
from connectors.postgres.upstream import (
    DEFAULT_SEARCH_PATH,
    FORWARDED_PARAMETERS,
    UpstreamError,
    startup_parameters,
)
from gateway.config import Config
from gateway.errors import PluginError
from gateway.model import Target

HERE = Path(".").absolute()


def target(**options: object) -> Target:
    return Target("pg-app", "postgres", "127.0.0.1", 5432, user="app", database="appdb",
                  options=options)


def test_the_search_path_is_pinned_whatever_the_client_or_the_role_default() -> None:
    """Every session and the catalog connection start with the same search_path: a default
    set with ALTER ROLE/DATABASE ... SET never applies through the gateway."""
    params = startup_parameters(target(), {"search_path": "evil, pg_catalog",
                                           "options": "-c search_path=evil",
                                           "application_name": "psql"})
    assert params == {"application_name": "psql", "user": "app", "database": "appdb",
                      "client_encoding": "UTF8", "search_path": DEFAULT_SEARCH_PATH}
    assert "search_path" not in FORWARDED_PARAMETERS


def test_a_target_may_name_its_own_search_path() -> None:
    params = startup_parameters(target(search_path="app, public"), {})
    assert params["search_path"] == "app, public"


@pytest.mark.parametrize("value", ["", "  ", 3, ["app"], "app\x00"])
def test_a_bad_search_path_option_is_refused(value: object) -> None:
    with pytest.raises(UpstreamError, match="options.search_path"):
        startup_parameters(target(search_path=value), {})


def test_config_check_names_a_bad_or_unknown_target_option() -> None:
    config = Config(HERE, HERE, targets={"pg-app": target(search_path=3)})
    with pytest.raises(PluginError, match=r"\[targets.pg-app.options\].*search_path"):
        wardgate_configure(config)
    config = Config(HERE, HERE, targets={"pg-app": target(serch_path="x")})
    with pytest.raises(PluginError, match="unknown key.*serch_path"):
        wardgate_configure(config)
    wardgate_configure(Config(HERE, HERE, targets={"pg-app": target(search_path="app, public")}))
