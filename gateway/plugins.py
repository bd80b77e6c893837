"""Loading plugins: every connector and detector arrives through the ``wardgate`` entry points.

The built-ins are registered exactly as a third party's plugin is (see pyproject.toml), so the
claim "operators add connectors as plugins" is exercised by every start of the gateway.
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Iterable, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, cast

import pluggy

from gateway import hookspecs
from gateway.errors import PluginError

if TYPE_CHECKING:
    from gateway.config import Config
    from gateway.connector import Connector
    from gateway.masking import Detector

log = logging.getLogger("wardgate.plugins")

ENTRY_POINT_GROUP = "wardgate"


class PluginHost:
    """A pluggy PluginManager with wardgate's hook specs and the entry points loaded."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)

    @property
    def hook(self) -> Any:
        return self.pm.hook

    def load_entry_points(self, *, disabled: Iterable[str] = ()) -> None:
        """Import and register every ``wardgate`` entry point; a broken one is a start-up error."""
        skip = set(disabled)
        for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            if ep.name in skip or self.pm.has_plugin(ep.name):
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # any import failure of foreign code is the operator's to fix
                raise PluginError(
                    f"plugin {ep.name!r} ({ep.value}) failed to load: {type(exc).__name__}: {exc}. "
                    f"Fix or uninstall the distribution that provides it"
                    + (f" ({ep.dist.name})" if ep.dist is not None else "")
                    + "."
                ) from exc
            self.register(plugin, ep.name)

    def register(self, plugin: ModuleType | object, name: str) -> None:
        try:
            self.pm.register(plugin, name)
        except (ValueError, pluggy.PluginValidationError) as exc:
            raise PluginError(f"plugin {name!r} could not be registered: {exc}") from exc

    def check_pending(self) -> None:
        """Fail fast when a plugin implements a hook wardgate does not define (a typo or a
        plugin written for another version)."""
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"{exc}. The plugin implements a hook wardgate does not know") from exc

    def connectors(self) -> dict[str, Connector]:
        found: dict[str, Connector] = {}
        owners: dict[str, str] = {}
        for impl in self.pm.hook.wardgate_connectors.get_hookimpls():
            offered = cast("Iterable[Connector]", impl.function() or ())
            for connector in offered:
                protocol = getattr(connector, "protocol", None)
                if not isinstance(protocol, str) or not protocol:
                    raise PluginError(
                        f"plugin {impl.plugin_name!r} returned a connector without a protocol name"
                    )
                if protocol in found:
                    raise PluginError(
                        f"protocol {protocol!r} is offered by both {owners[protocol]!r} and "
                        f"{impl.plugin_name!r}; disable one of them"
                    )
                found[protocol] = connector
                owners[protocol] = impl.plugin_name
        return found

    def detectors(self) -> dict[str, Detector]:
        found: dict[str, Detector] = {}
        for impl in self.pm.hook.wardgate_detectors.get_hookimpls():
            offered_detectors = cast("Iterable[Detector]", impl.function() or ())
            for detector in offered_detectors:
                name = getattr(detector, "name", None)
                if not isinstance(name, str) or not callable(getattr(detector, "scan", None)):
                    raise PluginError(
                        f"plugin {impl.plugin_name!r} returned a detector without name/scan()"
                    )
                if name in found:
                    raise PluginError(
                        f"detector {name!r} is registered twice (again by {impl.plugin_name!r})"
                    )
                found[name] = detector
        return found

    def select_detectors(self, names: Sequence[str]) -> list[Detector]:
        available = self.detectors()
        unknown = [n for n in names if n not in available]
        if unknown:
            raise PluginError(
                f"[masking] detectors names unknown detector(s) {', '.join(map(repr, unknown))}; "
                f"available: {', '.join(sorted(available))}"
            )
        return [available[n] for n in names]

    def configure(self, config: Config) -> None:
        """Hand every plugin the configuration; a plugin that refuses it stops the start-up."""
        for impl in self.pm.hook.wardgate_configure.get_hookimpls():
            try:
                impl.function(config=config)
            except PluginError:
                raise
            except Exception as exc:  # foreign code: any failure is the operator's to fix
                raise PluginError(
                    f"plugin {impl.plugin_name!r} rejected its configuration "
                    f"([plugins.{impl.plugin_name}]): {type(exc).__name__}: {exc}"
                ) from exc

    def notify(self, hook_name: str, **kwargs: Any) -> None:
        """Call a notification hook; a failing plugin is logged, never allowed to end a session."""
        hook = getattr(self.pm.hook, hook_name)
        for impl in hook.get_hookimpls():
            try:
                impl.function(**{k: kwargs[k] for k in impl.argnames})
            except Exception:
                log.exception("plugin %r failed in %s", impl.plugin_name, hook_name)
