"""The built-in detectors as a plugin.

Registered through the same ``wardgate`` entry-point group as third-party plugins
(``builtin_detectors = "gateway.masking.builtin"`` in pyproject.toml), so a plugin's detectors
are exactly as capable as these.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.hookspecs import hookimpl
from gateway.masking.detectors import Detector, builtin_detectors


@hookimpl
def wardgate_detectors() -> Sequence[Detector]:
    """credit_card, us_ssn, email, iban and secrets."""
    return builtin_detectors()
