"""Throughput and memory of a CSV export streamed from the audit store (a benchmark, not a test).

``python bench/export_memory.py URL --start-ns N --end-ns N`` opens the store at URL (``sqlite:///...`` or a
PostgreSQL DSN), streams ``export.stream(store.iter_records(Selection(start, end)), "csv")`` into /dev/null counting
the UTF-8 bytes, and prints one JSON object: records, bytes, seconds, records/s and the process's memory.

Run it in a fresh process per export (`bench/query_latency.py` does) so that each export starts from the same
baseline: resident memory right after the store is opened. On Linux the kernel's peak-RSS mark (VmHWM) is reset just
before the export (``echo 5 > /proc/self/clear_refs``) and read after it, and /proc/self/status is also sampled every
10 ms on a thread for the split below. (`resource.getrusage().ru_maxrss` would not do: it is never reset, and across
fork and exec it keeps the parent's peak.)

- ``rss_growth_mib``: peak VmRSS during the export minus VmRSS before it;
- ``anon_growth_mib``: peak RssAnon minus RssAnon before: the Python heap and SQLite's page cache (bounded by its
  ``cache_size``), i.e. what the export itself allocates;
- ``file_growth_mib``: peak RssFile minus RssFile before: with SQLite, pages of the database file read through its
  memory map (bounded by ``mmap_size``; clean page cache the kernel can drop).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from llmtally.exporter.api import export
from llmtally.exporter.store import Selection, open_store

_STATUS = Path("/proc/self/status")
_FIELDS = ("VmHWM", "VmRSS", "RssAnon", "RssFile")


def memory_kib() -> dict[str, int]:
    """VmHWM (peak VmRSS), VmRSS, RssAnon and RssFile of this process in KiB (empty without /proc)."""
    if not _STATUS.exists():
        return {}
    out = {}
    for line in _STATUS.read_text().splitlines():
        name, _, value = line.partition(":")
        if name in _FIELDS:
            out[name] = int(value.split()[0])
    return out


class PeakSampler:
    """Samples `memory_kib()` on a thread until stopped; keeps the peak of each field."""

    def __init__(self, interval_s: float = 0.01) -> None:
        self.peak = memory_kib()
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            for name, value in memory_kib().items():
                self.peak[name] = max(self.peak.get(name, 0), value)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def export_csv(url: str, start_ns: int, end_ns: int) -> dict[str, Any]:
    """Streams the CSV export of the records starting in [start_ns, end_ns) into /dev/null; figures as a dict."""
    store = open_store(url)
    try:
        selection = Selection(start_ns, end_ns)
        with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # resets VmHWM to the current RSS
        before = memory_kib()
        size = 0
        with PeakSampler() as sampler, open(os.devnull, "wb") as sink:
            started = time.perf_counter()
            for chunk in export.stream(store.iter_records(selection), "csv"):
                data = chunk.encode()
                size += len(data)
                sink.write(data)
            seconds = time.perf_counter() - started
        records = store.count_matching(selection)
    finally:
        store.close()
    # VmHWM also covers a peak between two samples.
    peak_rss = max(sampler.peak.get("VmRSS", 0), memory_kib().get("VmHWM", 0))

    def growth(name: str, peak: int) -> float:
        return round((peak - before.get(name, 0)) / 1024, 1)

    return {
        "records": records,
        "bytes": size,
        "seconds": seconds,
        "records_per_s": records / seconds if seconds else 0.0,
        "rss_before_mib": round(before.get("VmRSS", 0) / 1024, 1),
        "rss_peak_mib": round(peak_rss / 1024, 1),
        "rss_growth_mib": growth("VmRSS", peak_rss),
        "anon_growth_mib": growth("RssAnon", sampler.peak.get("RssAnon", 0)),
        "file_growth_mib": growth("RssFile", sampler.peak.get("RssFile", 0)),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", help="the store: sqlite:///path.db or a PostgreSQL DSN")
    parser.add_argument("--start-ns", type=int, required=True)
    parser.add_argument("--end-ns", type=int, required=True)
    args = parser.parse_args(argv)
    print(json.dumps(export_csv(args.url, args.start_ns, args.end_ns)))


if __name__ == "__main__":
    main()
