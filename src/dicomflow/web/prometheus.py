"""``/metrics`` in the Prometheus text format.

A scrape shows the process's :data:`dicomflow.metrics.REGISTRY` (what the node
received, refused and exported, the stage latencies, process statistics) and the
jobs of the context's queue, counted when scraped: jobs run in worker processes,
possibly on other machines, so only the queue knows them all. The job collector is
built per scrape and bound to that queue, never registered in a shared registry, so
any number of nodes and dashboards may live in one process.
"""

import logging
from collections import Counter
from collections.abc import Iterator
from typing import Protocol, runtime_checkable

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from dicomflow import metrics as node_metrics
from dicomflow.queue.backend import PerThreadBackend
from dicomflow.queue.job import JobKind, JobStatus, job_kind
from dicomflow.web.context import WebContext

logger = logging.getLogger(__name__)

router = APIRouter()

#: Without a counting query, the newest this many jobs are counted.
SAMPLE = 1000
WAITING = (JobStatus.QUEUED, JobStatus.DEFERRED)

JobCounts = dict[tuple[JobStatus, str], int]


@runtime_checkable
class CountingBackend(Protocol):
    """A backend that counts its jobs per status and kind itself (both the embedded and
    the RQ backends do)."""

    def counts(self) -> JobCounts: ...


@router.get("/metrics")
def metrics(request: Request) -> Response:
    context: WebContext = request.app.state.context
    scrape = CollectorRegistry()
    scrape.register(_Registered(node_metrics.REGISTRY))
    scrape.register(JobCollector(context.queue))
    return Response(generate_latest(scrape), media_type=CONTENT_TYPE_LATEST)


class _Registered(Collector):
    """The metrics of a registry, as one collector of another."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Metric]:
        yield from self.registry.collect()


class JobCollector(Collector):
    """``dicomflow_jobs{status, kind}``, ``dicomflow_queue_depth`` and
    ``dicomflow_queue_up``, read from the queue when scraped."""

    def __init__(self, queue: PerThreadBackend) -> None:
        self.queue = queue

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "dicomflow_queue_up", "Whether the job queue answered this scrape (1) or not (0)."
        )
        try:
            counts = job_counts(self.queue)
        except Exception:
            logger.exception("metrics: cannot count the jobs of %s", self.queue.url)
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield up
        yield _jobs_family(counts)
        depth = GaugeMetricFamily(
            "dicomflow_queue_depth", "Jobs waiting for a worker: queued, or deferred."
        )
        depth.add_metric([], float(sum(n for (s, _), n in counts.items() if s in WAITING)))
        yield depth


def job_counts(queue: PerThreadBackend) -> JobCounts:
    """Jobs per status and kind: counted by the backend when it can (exactly), otherwise
    over its newest :data:`SAMPLE` jobs."""
    backend = queue.get()
    if isinstance(backend, CountingBackend):
        return backend.counts()
    return dict(Counter((job.status, job_kind(job.meta)) for job in backend.jobs(limit=SAMPLE)))


def _jobs_family(counts: JobCounts) -> GaugeMetricFamily:
    family = GaugeMetricFamily(
        "dicomflow_jobs",
        "Jobs the queue holds, by status and kind (pipeline round, registry service,"
        " archive, other).",
        labels=["status", "kind"],
    )
    kinds = sorted({*JobKind, *(kind for _, kind in counts)})
    for status in JobStatus:
        for kind in kinds:
            family.add_metric([status.value, kind], float(counts.get((status, kind), 0)))
    return family
