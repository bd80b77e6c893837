"""Cost of masking per value, with every built-in detector active.

Run: ``.venv/bin/python bench/masking_bench.py``. Prints the median (and the best) over several
runs of the nanoseconds one ``Masker.mask_text`` call takes on:

- clean short values (names, ids, dates, amounts: what most result cells hold),
- clean long values (about 1 KB of prose with numbers and punctuation),
- values holding a card number,
- clean values with long digit runs (fractions, ids, timestamps: they pass the card pre-check, so
  they measure the card detector's structural checks),

and of ``RowMasker.mask_text_values`` on a clean 8-column row (the per-row fast path).
No assertions: this measures, the unit tests check behaviour.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.masking import Masker, builtin_detectors

RUNS = 7

CLEAN_SHORT = [
    "Alice",
    "42",
    "2024-01-15",
    "2024-01-15 12:30:45+00",
    "John Smith",
    "London",
    "19.99",
    "active",
    "7f3c2a10-5b8e-4d2f-9c1a-0e6b7d8f9a21",
    "Order shipped to Main Street 12",
]
CLEAN_LONG = [
    (
        "The quarterly report covers 12 regions and 340 stores; revenue rose 4.5% to 1,234,567 "
        "while costs (logistics, staff: 2,100 people) stayed flat. See section 3.2 for details. "
    )
    * 6,
    ("SELECT id, name FROM users WHERE created_at > '2024-01-01' ORDER BY id LIMIT 100; " * 13),
]
LONG_NUMBERS = [
    "1.00000000000000",
    "0.4111111111111111",
    "20261201123045123456",
    "4.111111111111111e+15",
    "1234567890123",
    "2024-12-01 12:30:45.123456789012+00",
    "order 9780201633610",
    "12345678901234567890123456",
]
WITH_CARD = [
    "4111111111111111",
    "card: 5500 0000 0000 0004 exp 12/27",
    "paid with 3782-822463-10005 on 2024-03-01",
]


def per_call_ns(func: Callable[[str], object], values: list[str], loops: int) -> float:
    start = time.perf_counter()
    for _ in range(loops):
        for value in values:
            func(value)
    return (time.perf_counter() - start) / (loops * len(values)) * 1e9


def runs_ns(func: Callable[[str], object], values: list[str], loops: int) -> list[float]:
    return [per_call_ns(func, values, loops) for _ in range(RUNS)]


def report(label: str, samples: list[float]) -> None:
    # The median is the headline; the best run shows the cost without noise from other processes.
    print(f"{label:34s} {statistics.median(samples):8.0f} {min(samples):8.0f}")


def main() -> None:
    masker = Masker(builtin_detectors(), column_globs=["*password*", "*ssn*"])
    print(f"python {sys.version.split()[0]}, {RUNS} runs, all built-in detectors")
    print(f"{'ns per value':34s} {'median':>8s} {'best':>8s}")
    cases = [
        ("clean short values", CLEAN_SHORT, 20_000),
        ("clean long values (~1 KB)", CLEAN_LONG, 2_000),
        ("values with a card", WITH_CARD, 5_000),
        ("clean long digit runs", LONG_NUMBERS, 10_000),
    ]
    for label, values, loops in cases:
        report(label, runs_ns(masker.mask_text, values, loops))

    row_masker = masker.for_columns(
        ["id", "name", "email_verified", "city", "created", "amount", "status", "note"]
    )
    row = [v.encode() for v in CLEAN_SHORT[:8]]
    loops = 10_000
    samples = []
    for _ in range(RUNS):
        start = time.perf_counter()
        for _ in range(loops):
            row_masker.mask_text_values(row)
        samples.append((time.perf_counter() - start) / (loops * len(row)) * 1e9)
    report("clean 8-column row (per value)", samples)


if __name__ == "__main__":
    main()
