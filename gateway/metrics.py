"""The gateway's Prometheus metrics: counted in each worker's memory, merged when scraped.

prometheus_client's multiprocess mode writes every sample to a memory-mapped file under a
lock and asks the kernel for the process id on each write: ~19 µs and seven `getpid` calls
per request here, some 5 % of the gateway's CPU per request. So the hot path only adds to
plain dictionaries of this worker (~3 µs, no lock: one event loop), and once a second the
worker writes what it counted so far, whole, to `gateway-<pid>.json` in
PROMETHEUS_MULTIPROC_DIR (written aside, then renamed: a reader never sees half a file).
Whichever process is scraped merges every worker's file (`GatewayCollector`): counters and
histograms add up across workers, including workers that have exited since (their counts
happened), while a gauge counts only for workers still alive. The directory is emptied when
the container starts (`portal.entrypoint`), as for prometheus_client's own files.

Labels are bounded: tenant and model are the directory's own slugs (a model a client named
but the catalog doesn't know is ""), status an HTTP status, reasons a fixed set. Latency and
time-to-first-token histograms are per model only.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import os
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)

logger = logging.getLogger(__name__)

# Seconds. Model answers range from milliseconds (embeddings) to minutes (long generations).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                   120.0, 300.0)
TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Refusals the gateway decides itself (OpenAI error codes), counted by tenant.
REFUSALS = frozenset({"rate_limit_exceeded", "insufficient_quota", "too_many_invalid_keys",
                      "rate_limiter_unavailable", "budget_check_unavailable"})
FLUSH_SECONDS = 1.0
FILE_PREFIX = "gateway-"

COUNTERS = {
    # family: (help, label names)
    "portal_gateway_requests": ("Requests answered by the gateway.",
                                ("tenant", "model", "status")),
    "portal_gateway_tokens": ("Tokens metered (input: prompt, output: completion).",
                              ("tenant", "model", "type")),
    "portal_gateway_refusals": ("Requests the gateway refused for rate limits, budgets or "
                                "invalid keys (reason: the OpenAI error code).",
                                ("tenant", "reason")),
    "portal_gateway_upstream_errors": ("Failed attempts to reach or read a model server.",
                                       ("model", "reason")),
    "portal_gateway_upstream_retries": ("Requests sent to another deployment of the model "
                                        "after a connection failure.", ("model",)),
    "portal_gateway_usage_events_dropped": ("Usage events dropped because the buffer was full "
                                            "(Redis unreachable for long).", ()),
}
HISTOGRAMS = {
    "portal_gateway_request_duration_seconds": (
        "Time from the request's arrival to the end of its answer.", LATENCY_BUCKETS),
    "portal_gateway_time_to_first_token_seconds": (
        "Time from the request's arrival to the first byte of the model's answer.",
        TTFT_BUCKETS),
}
GAUGES = {
    "portal_gateway_usage_events_buffered": (
        "Usage events waiting in the workers' buffers for Redis."),
}


class GatewayMetrics:
    """What one gateway worker counted since it started."""

    def __init__(self) -> None:
        self.counters: dict[str, defaultdict[tuple, float]] = {
            name: defaultdict(int) for name in COUNTERS}
        # model → [count per bucket (the last is +Inf), sum]
        self.histograms: dict[str, dict[str, list]] = {name: {} for name in HISTOGRAMS}
        self.gauges: dict[str, Callable[[], float]] = {}
        # Called before each snapshot: counts kept elsewhere (the usage buffer's drops).
        self.samplers: list[Callable[[GatewayMetrics], None]] = []
        self._requests = self.counters["portal_gateway_requests"]
        self._tokens = self.counters["portal_gateway_tokens"]
        self._latency = self.histograms["portal_gateway_request_duration_seconds"]
        self._ttft = self.histograms["portal_gateway_time_to_first_token_seconds"]
        self._task: asyncio.Task | None = None

    # --- the hot path: dictionary arithmetic only --------------------------------------

    def request(self, tenant: str, model: str, status: int) -> None:
        self._requests[tenant, model, status] += 1

    def served(self, tenant: str, model: str, status: int, input_tokens: int,
               output_tokens: int, seconds: float, first_token_seconds: float | None) -> None:
        self._requests[tenant, model, status] += 1
        if input_tokens:
            self._tokens[tenant, model, "input"] += input_tokens
        if output_tokens:
            self._tokens[tenant, model, "output"] += output_tokens
        _observe(self._latency, LATENCY_BUCKETS, model, seconds)
        if first_token_seconds is not None:
            _observe(self._ttft, TTFT_BUCKETS, model, first_token_seconds)

    def count(self, family: str, *labels: str, amount: float = 1) -> None:
        self.counters[family][labels] += amount

    # --- publishing ----------------------------------------------------------------------

    def snapshot(self) -> bytes:
        for sample in self.samplers:
            sample(self)
        return orjson.dumps({
            "pid": os.getpid(),
            "counters": {name: [[*labels, value] for labels, value in values.items()]
                         for name, values in self.counters.items()},
            "histograms": self.histograms,
            "gauges": {name: read() for name, read in self.gauges.items()},
        })

    def write(self, directory: Path) -> None:
        path = directory / f"{FILE_PREFIX}{os.getpid()}.json"
        aside = path.with_suffix(".tmp")
        aside.write_bytes(self.snapshot())
        os.replace(aside, path)

    def start(self, directory: Path) -> None:
        self._task = asyncio.create_task(self._publish(directory), name="metrics-publisher")

    async def _publish(self, directory: Path) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            try:
                self.write(directory)
            except OSError as exc:
                logger.warning("Could not write the gateway's metrics to %s: %s", directory,
                               exc)

    async def close(self, directory: Path | None) -> None:
        if self._task:
            self._task.cancel()
        if directory is not None:
            try:
                self.write(directory)  # what the last second counted
            except OSError:
                pass


def _observe(histogram: dict[str, list], buckets: tuple, model: str, value: float) -> None:
    entry = histogram.get(model)
    if entry is None:
        entry = histogram[model] = [[0] * (len(buckets) + 1), 0.0]
    entry[0][bisect.bisect_left(buckets, value)] += 1
    entry[1] += value


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class GatewayCollector:
    """Merges every gateway worker's file at scrape time."""

    def __init__(self, directory: Path):
        self.directory = directory

    def _snapshots(self) -> Iterator[dict]:
        for path in sorted(self.directory.glob(f"{FILE_PREFIX}*.json")):
            try:
                yield orjson.loads(path.read_bytes())
            except (OSError, orjson.JSONDecodeError):
                continue  # removed meanwhile; a renamed file is never half-written

    def collect(self):
        counters: dict[str, defaultdict[tuple, float]] = {
            name: defaultdict(float) for name in COUNTERS}
        histograms: dict[str, dict[str, list]] = {name: {} for name in HISTOGRAMS}
        gauges: dict[str, float] = dict.fromkeys(GAUGES, 0.0)
        for snapshot in self._snapshots():
            for name, rows in snapshot.get("counters", {}).items():
                if name in counters:
                    for *labels, value in rows:
                        counters[name][tuple(str(label) for label in labels)] += value
            for name, models in snapshot.get("histograms", {}).items():
                if name not in histograms:
                    continue
                for model, (counts, total) in models.items():
                    merged = histograms[name].setdefault(model, [[0] * len(counts), 0.0])
                    merged[0] = [a + b for a, b in zip(merged[0], counts, strict=True)]
                    merged[1] += total
            if _alive(snapshot.get("pid", 0)):
                for name, value in snapshot.get("gauges", {}).items():
                    if name in gauges:
                        gauges[name] += value
        for name, (documentation, labels) in COUNTERS.items():
            family = CounterMetricFamily(name, documentation, labels=labels)
            for values, value in sorted(counters[name].items()):
                family.add_metric(list(values), value)
            yield family
        for name, (documentation, buckets) in HISTOGRAMS.items():
            family = HistogramMetricFamily(name, documentation, labels=["model"])
            for model, (counts, total) in sorted(histograms[name].items()):
                cumulative, running = [], 0
                for bound, count in zip((*map(str, buckets), "+Inf"), counts, strict=True):
                    running += count
                    cumulative.append((bound, running))
                family.add_metric([model], cumulative, total)
            yield family
        for name, documentation in GAUGES.items():
            yield GaugeMetricFamily(name, documentation, value=gauges[name])
