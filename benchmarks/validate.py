"""Validation speed: decode German-credit scoring records, against bare ``orjson.loads`` of the same bytes.

Run: ``python -m benchmarks.validate [--records N] [--rounds R]``. One core, no services. Prints records/s for
``decode`` (parse + validate + build the dataclass), for ``orjson.loads`` alone, and their ratio.
"""

from __future__ import annotations

import argparse
import gc
import platform
import time
from collections.abc import Callable

import orjson

from stream_logger.records import decode
from stream_logger.samples import german_credit_record


def _best_rate(run: Callable[[], object], count: int, rounds: int) -> float:
    """The best records/s over ``rounds`` runs (the least disturbed by other processes)."""
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return count / best


def main(argv: list[str] | None = None) -> int:
    """Measure and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--records", type=int, default=20_000, help="distinct records per round")
    parser.add_argument("--rounds", type=int, default=7, help="rounds per measurement; the best one counts")
    parser.add_argument("--rows", type=int, default=1, help="scored rows per record")
    args = parser.parse_args(argv)

    messages = [orjson.dumps(german_credit_record(i, rows=args.rows)) for i in range(args.records)]
    size = sum(map(len, messages)) / len(messages)
    for message in messages[:100]:  # warm up, and make sure every record is valid
        decode(message)

    def run_decode() -> None:
        for message in messages:
            decode(message)

    def run_loads() -> None:
        for message in messages:
            orjson.loads(message)

    gc.collect()
    rates: dict[str, list[float]] = {"decode": [], "loads": []}
    for _ in range(2):  # interleaved, so both see the same machine load
        rates["decode"].append(_best_rate(run_decode, len(messages), args.rounds))
        rates["loads"].append(_best_rate(run_loads, len(messages), args.rounds))
    decode_rate, loads_rate = max(rates["decode"]), max(rates["loads"])

    print(f"python {platform.python_version()}, orjson {orjson.__version__}, {platform.machine()}")
    print(f"{len(messages)} German-credit records, {args.rows} row(s) each, {size:.0f} bytes on average")
    print(f"decode (parse + validate + dataclass): {decode_rate:>10,.0f} records/s  ({1e6 / decode_rate:.2f} us each)")
    print(f"orjson.loads alone (reference):        {loads_rate:>10,.0f} records/s  ({1e6 / loads_rate:.2f} us each)")
    print(f"ratio decode / loads time:             {loads_rate / decode_rate:>10.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
