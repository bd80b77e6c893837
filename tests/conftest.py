from __future__ import annotations

import os

# Tests must never read an operator's configuration by accident.
os.environ.pop("WARDGATE_CONFIG", None)
