"""wardgate: the protocol-independent trio core.

Connectors and plugins import from here (``gateway.model``, ``gateway.errors``,
``gateway.session`` ...); this package never imports a connector or a plugin.
"""

from __future__ import annotations

__version__ = "0.1.0"
