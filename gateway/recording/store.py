"""Where recordings live on disk: ``root/YYYY-MM-DD/<UTC time>_<session_id>.wgrec``.

Day directories keep any one directory small and make retention a matter of deleting whole
days; file names sort chronologically, so listing needs no file to be opened.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from pathlib import Path

SUFFIX = ".wgrec"
# Session ids become file names: anything that could climb out of the day directory or hide
# the file ("../x", "a/b", ".x") is refused.
_SESSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


class RecordingStore:
    """The recordings directory of one gateway."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def new_path(self, session_id: str, started: float) -> Path:
        """Path for a new recording; creates its day directory (0750) if needed.

        ``started`` is unix seconds; the day and time in the name are UTC.
        """
        if not _SESSION_ID.fullmatch(session_id):
            raise ValueError(
                f"session id {session_id!r} cannot name a recording file "
                "(1-128 of A-Z a-z 0-9 . _ -, starting with a letter or digit)"
            )
        if isinstance(started, bool) or not math.isfinite(started):
            raise ValueError(f"started must be unix seconds, got {started!r}")
        moment = datetime.fromtimestamp(started, UTC)
        day = self.root / moment.strftime("%Y-%m-%d")
        day.mkdir(mode=0o750, parents=True, exist_ok=True)
        stamp = moment.strftime("%Y%m%dT%H%M%S") + f".{moment.microsecond:06d}Z"
        return day / f"{stamp}_{session_id}{SUFFIX}"

    def list(self) -> list[Path]:
        """Every recording under root, newest first (by the start time in its name)."""
        if not self.root.is_dir():
            return []
        found: list[Path] = []
        for day in self.root.iterdir():
            if not _DAY.fullmatch(day.name) or not day.is_dir() or day.is_symlink():
                continue
            found.extend(
                path
                for path in day.iterdir()
                if path.name.endswith(SUFFIX) and not path.name.startswith(".") and path.is_file()
            )
        # Names start with the full UTC timestamp, so the name alone orders them.
        found.sort(key=lambda path: path.name, reverse=True)
        return found
