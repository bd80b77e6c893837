#!/usr/bin/env python3
"""Runs a driver's own unittest suite and writes one JSON line per test as it goes.

    python bench/driver_suite_child.py --root SDIST --loader psycopg2 --out RESULTS.jsonl [--exclude IDS]

Started by ``bench/pg_driver_suite.py``, never by hand. A line is written (and flushed) when a
test starts and when it ends, so the parent can tell which test hung or killed the process and
start this again without the tests already done (``--exclude``: a file of test ids, one a line).
The driver's configuration comes from the environment the parent sets (PSYCOPG2_TESTDB*, PG*).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
import traceback
import unittest
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Any

ExcInfo = tuple[type[BaseException], BaseException, TracebackType]
# unittest's own type for the err argument of its add* methods
OptExcInfo = ExcInfo | tuple[None, None, None]


def _flatten(suite: unittest.TestSuite | unittest.TestCase) -> Iterator[unittest.TestCase]:
    if isinstance(suite, unittest.TestSuite):
        for item in suite:
            yield from _flatten(item)
    else:
        yield suite


def _cause(err: ExcInfo) -> tuple[str, str]:
    """(error class, first line of its message): what the report groups failures by."""
    exc_type, exc, _ = err
    module = exc_type.__module__
    name = exc_type.__qualname__ if module in ("builtins", "__main__") else f"{module}.{exc_type.__qualname__}"
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    return name, first[:300]


class _JsonLinesResult(unittest.TestResult):
    """Every outcome as a JSON line; nothing buffered beyond one line."""

    def __init__(self, out: IO[str]) -> None:
        super().__init__()
        self._out = out
        self._started: dict[str, float] = {}
        self._ended: set[str] = set()

    def _write(self, record: dict[str, Any]) -> None:
        self._out.write(json.dumps(record) + "\n")
        self._out.flush()

    def startTest(self, test: unittest.TestCase) -> None:
        super().startTest(test)
        self._started[test.id()] = time.monotonic()
        self._write({"event": "start", "id": test.id(), "t": time.time()})

    def _end(self, test: unittest.TestCase, outcome: str, err: OptExcInfo | None = None,
             reason: str = "") -> None:
        # Errors of class or module fixtures arrive as unittest's _ErrorHolder, which has id().
        test_id = test.id()
        if test_id in self._ended:
            return  # a second failing subtest: the first one named the cause
        self._ended.add(test_id)
        began = self._started.get(test_id, time.monotonic())
        record: dict[str, Any] = {
            "event": "end", "id": test_id, "outcome": outcome,
            "seconds": round(time.monotonic() - began, 3),
        }
        if err is not None and err[0] is not None:
            record["error"], record["message"] = _cause(err)
            record["traceback"] = "".join(traceback.format_exception(err[1]))[-6000:]
        if reason:
            record["error"], record["message"] = "skip", reason[:300]
        self._write(record)

    def addSuccess(self, test: unittest.TestCase) -> None:
        super().addSuccess(test)
        self._end(test, "pass")

    def addFailure(self, test: unittest.TestCase, err: OptExcInfo) -> None:
        super().addFailure(test, err)
        self._end(test, "fail", err)

    def addError(self, test: unittest.TestCase, err: OptExcInfo) -> None:
        super().addError(test, err)
        self._end(test, "error", err)

    def addSkip(self, test: unittest.TestCase, reason: str) -> None:
        super().addSkip(test, reason)
        self._end(test, "skip", reason=reason)

    def addExpectedFailure(self, test: unittest.TestCase, err: OptExcInfo) -> None:
        super().addExpectedFailure(test, err)
        self._end(test, "xfail", err)

    def addUnexpectedSuccess(self, test: unittest.TestCase) -> None:
        super().addUnexpectedSuccess(test)
        self._end(test, "fail")

    def addSubTest(self, test: unittest.TestCase, subtest: unittest.TestCase,
                   err: OptExcInfo | None) -> None:
        super().addSubTest(test, subtest, err)
        if err is not None and err[0] is not None:
            # A failing subtest fails its test; the first one names the cause.
            failed = issubclass(err[0], test.failureException)
            self._end(test, "fail" if failed else "error", err)


def _load(loader: str, root: Path) -> unittest.TestSuite:
    if loader == "psycopg2":
        # The sdist's tests package builds its own suite (and first checks that it can connect).
        suite: unittest.TestSuite = importlib.import_module("tests").test_suite()
        return suite
    if loader == "discover":
        return unittest.defaultTestLoader.discover(str(root / "tests"), top_level_dir=str(root))
    raise SystemExit(f"unknown loader {loader!r}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", type=Path, required=True, help="the unpacked sdist")
    parser.add_argument("--loader", choices=("psycopg2", "discover"), required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--exclude", type=Path)
    parser.add_argument("--include", type=Path, help="run only these test ids (one a line)")
    parser.add_argument("--only", default="", help="run only test ids containing this text")
    args = parser.parse_args()

    os.chdir(args.root)
    sys.path.insert(0, str(args.root))
    skip = set(args.exclude.read_text().split()) if args.exclude and args.exclude.exists() else set()
    wanted = set(args.include.read_text().split()) if args.include else None
    tests = [t for t in _flatten(_load(args.loader, args.root))
             if t.id() not in skip and args.only in t.id() and (wanted is None or t.id() in wanted)]
    with args.out.open("a") as out:
        result = _JsonLinesResult(out)
        unittest.TestSuite(tests).run(result)
        out.write(json.dumps({"event": "done"}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
