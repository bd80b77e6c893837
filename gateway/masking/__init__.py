"""Masking: hide sensitive values inline in what flows back to the agent.

Detectors (built-in ones here, more from plugins through ``wardgate_detectors``) find spans of
text; a :class:`Masker` merges their findings and rewrites text; a :class:`RowMasker` applies a
masker and column-name globs to result rows. See docs/masking.md for the replacement format and
the limits.
"""

from __future__ import annotations

from gateway.masking.detectors import Detector, Finding, builtin_detectors
from gateway.masking.masker import MASK, Masker, RowMasker

__all__ = ["MASK", "Detector", "Finding", "Masker", "RowMasker", "builtin_detectors"]
