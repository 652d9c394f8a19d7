"""Emitter figures: cost of ``log()`` on the event loop, records/s into the broker, memory while it is down.

Run: ``python -m benchmarks.emitter [--records N]``. The throughput part needs the local broker (127.0.0.1:9092 or
``STREAM_LOGGER_BOOTSTRAP_SERVERS``); it creates a topic ``bench_emitter_<hex>`` and deletes it afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import statistics
import tempfile
import time
import uuid
from typing import Any

from stream_logger import Emitter
from stream_logger.config import Settings
from stream_logger.encoding import encode
from stream_logger.samples import german_credit_record
from stream_logger.scoring_call import build_record
from stream_logger.topics import create_topic, delete_topic

UNREACHABLE = "127.0.0.1:1"


def _calls(n: int) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        r = german_credit_record(i)
        out.append({"request": r["request"], "response": r["response"], "subscription_id": r["subscription_id"]})
    return out


def _pct(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=1000)[int(q * 1000) - 1]


async def _warm_up(em: Emitter) -> None:
    """Deliver one record first: the producer then has its id and the new topic's partition leaders, which a
    just-created topic takes up to a second to report (records logged meanwhile would only queue)."""
    em.log_encoded("warm-up", encode(build_record(**_calls(1)[0])))
    await em.flush(30)


def _spin(n: int) -> int:
    """A fixed amount of pure CPU work: the reference for how much this machine alone stretches a call."""
    total = 0
    for i in range(n):
        total += i
    return total


def _spin_for(target_us: float) -> int:
    """The ``_spin`` argument that takes about ``target_us`` (median of a quick sample)."""
    clock = time.perf_counter_ns
    times = []
    for _ in range(200):
        t0 = clock()
        _spin(1000)
        times.append(clock() - t0)
    return max(1, round(target_us * 1000 / statistics.median(times) * 1000))


async def log_cost(
    calls: list[dict[str, Any]], validate: bool, interval_s: float | None = None
) -> tuple[float, float, float, float]:
    """p50 and p99 of one ``log()`` call in µs, against the real broker; then p50 and p99 of the reference: a fixed
    CPU loop as long as log()'s back-to-back median.

    ``interval_s=None``: calls back to back, in chunks of 500 with the sender running between them, each followed by
    the reference loop. On a shared VM even a loop of fixed work has a long tail (interrupts, the hypervisor, the
    broker and the producer's threads on the other core): the reference shows how much of log()'s p99 is the
    machine's.

    Else at a service's pace: one call, then the event loop idles ``interval_s``; every other wake-up times the
    reference instead. Both start cold (caches, an idle core), which back-to-back calls never do; but the loop
    touches little code and data, and a cold start costs in proportion to what is touched, so the two are not a
    like-for-like pair.
    """
    settings = Settings.from_env()
    samples: list[float] = []
    reference: list[float] = []
    topic = f"bench_emitter_cost_{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as spool:
        async with Emitter(topic, settings.bootstrap_servers, spool_dir=spool, validate=validate) as em:
            await _warm_up(em)
            clock = time.perf_counter_ns
            pilot = []
            for call in calls[:1000]:
                t0 = clock()
                em.log(**call)
                pilot.append((clock() - t0) / 1000)
            spin = _spin_for(statistics.median(pilot))
            if interval_s is None:
                for start in range(0, len(calls), 500):
                    for call in calls[start : start + 500]:
                        t0 = clock()
                        em.log(**call)
                        t1 = clock()
                        _spin(spin)
                        reference.append((clock() - t1) / 1000)
                        samples.append((t1 - t0) / 1000)
                    await asyncio.sleep(0)
            else:
                for i, call in enumerate(calls):
                    t0 = clock()
                    if i % 2:
                        em.log(**call)
                        samples.append((clock() - t0) / 1000)
                    else:
                        _spin(spin)
                        reference.append((clock() - t0) / 1000)
                    await asyncio.sleep(interval_s)
            await em.flush(60)
    await delete_topic(settings.bootstrap_servers, topic)
    return _pct(samples, 0.5), _pct(samples, 0.99), _pct(reference, 0.5), _pct(reference, 0.99)


async def throughput(
    calls: list[dict[str, Any]], total: int, validate: bool | None
) -> tuple[float, int, int, float, float]:
    """Records/s from the first log() to the last acknowledgement, how many were acknowledged, and spilled; then the
    serving thread's CPU time a record (µs) while it logged, and the machine's busy share of its cores meanwhile.

    ``validate=None``: records encoded beforehand and queued with ``log_encoded`` (the sender's own ceiling). That
    loop offers records far faster than any broker takes them, so it waits while 20,000 are pending: it measures
    delivery, not the spool.
    """
    settings = Settings.from_env()
    topic = f"bench_emitter_{uuid.uuid4().hex[:8]}"
    await create_topic(settings.bootstrap_servers, topic, partitions=3)
    with tempfile.TemporaryDirectory() as spool:
        async with Emitter(topic, settings.bootstrap_servers, spool_dir=spool, validate=bool(validate)) as em:
            encoded = [(f"{i:032x}", encode(build_record(**c))) for i, c in enumerate(calls)]
            await _warm_up(em)
            machine = _machine_busy()
            started = time.perf_counter()
            cpu_started = time.thread_time()
            n = len(calls)
            for i in range(total):
                if validate is None:
                    em.log_encoded(*encoded[i % n])
                else:
                    em.log(**calls[i % n])
                if i % 1000 == 999:
                    await asyncio.sleep(0)
                    while validate is None and em.stats().queued > 20_000:
                        await asyncio.sleep(0.001)
            cpu_us = (time.thread_time() - cpu_started) / total * 1e6
            busy = _machine_busy(machine)
            await em.flush(120)
            elapsed = time.perf_counter() - started
            stats = em.stats()
    await delete_topic(settings.bootstrap_servers, topic)
    return total / elapsed, stats.acknowledged - 1, stats.spilled, cpu_us, busy


def _machine_busy(since: tuple[int, int] | None = None) -> Any:
    """The machine's busy and total CPU ticks (``/proc/stat``); with ``since``, the busy share since then."""
    with open("/proc/stat") as f:
        ticks = [int(t) for t in f.readline().split()[1:8]]
    now = (sum(ticks) - ticks[3] - ticks[4], sum(ticks))  # all but idle and iowait
    if since is None:
        return now
    return (now[0] - since[0]) / max(1, now[1] - since[1])


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def memory_while_down(calls: list[dict[str, Any]], total: int, cap: int) -> tuple[int, int, int]:
    """Growth of the process's resident memory (bytes) while logging ``total`` records to an unreachable broker.

    Resident memory, not Python's traced memory: the pending records live in librdkafka's queue. A first emitter
    warms what is paid once per process (the check's known layouts, CPython's free lists, librdkafka itself); its
    buffer is small, so that it does not grow the heap the measured emitter would then reuse.
    """
    with tempfile.TemporaryDirectory() as spool:
        warm = Emitter("bench_warm", UNREACHABLE, overflow="drop", max_buffer_bytes=256 << 10, spool_dir=spool)
        await warm.start()
        for call in calls:
            warm.log(**call)
        await warm.stop()
        em = Emitter("bench_down", UNREACHABLE, overflow="drop", max_buffer_bytes=cap, spool_dir=spool)
        await em.start()
        gc.collect()
        base = peak = _rss_bytes()
        n = len(calls)
        for i in range(total):
            em.log(**calls[i % n])
            if i % 500 == 499:
                peak = max(peak, _rss_bytes())
                await asyncio.sleep(0)
        stats = em.stats()
        await em.stop()
    return peak - base, stats.dropped, stats.queued


async def _main(args: argparse.Namespace) -> None:
    calls = _calls(5_000)
    cap = 8 << 20  # first: the later runs grow the heap, and resident memory would not show the queue
    peak, dropped, queued = await memory_while_down(calls, 60_000, cap)
    print(
        f"memory while the broker is unreachable (overflow=drop, max_buffer_bytes={cap:,}, 60,000 records): "
        f"resident memory grew {peak:,} bytes ({peak / cap:.2f}x the cap); queued {queued:,}, dropped {dropped:,}"
    )
    print("log() cost on the event loop (German-credit record, 1 row, 20 features), 20,000 calls:")
    for validate in (True, False):
        p50, p99, ref50, ref99 = await log_cost(calls * 4, validate)
        print(
            f"  validate={validate!s:5}  p50 {p50:6.1f} µs   p99 {p99:6.1f} µs"
            f"   (reference, fixed CPU work: p50 {ref50:5.1f} µs, p99 {ref99:5.1f} µs; p99 ratio {p99 / ref99:.2f})"
        )
    p50, p99, ref50, ref99 = await log_cost(calls[:4000], True, 0.001)
    print(
        f"  at a service's pace (a call every 1 ms, 2,000 calls), validate=True  p50 {p50:6.1f} µs   p99 {p99:6.1f} µs"
        f"   (the reference loop, also started cold but touching little: p50 {ref50:5.1f} µs, p99 {ref99:5.1f} µs)"
    )
    print(f"sustained records/s into the local broker, {args.records:,} records, one process:")
    rates = {}
    for mode in (None, True, False):
        rate, acked, spilled, cpu_us, busy = await throughput(calls, args.records, mode)
        rates[mode] = rate
        what = "pre-encoded (log_encoded)" if mode is None else f"log(validate={mode})"
        ratio = "" if mode is None else f", {rate / rates[None]:.2f}x the pre-encoded rate"
        print(f"  {what:26} {rate:9,.0f} records/s  ({acked:,} acknowledged, {spilled:,} through the spool{ratio})")
        print(f"  {'':26} serving thread {cpu_us:5.1f} µs of CPU a record; the machine's cores {busy:.0%} busy")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--records", type=int, default=200_000, help="records for the throughput run")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(_main(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
