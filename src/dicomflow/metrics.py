"""The node's Prometheus metrics: what it received, refused, ran and exported, and how
long each stage of a round took.

The metric objects live in :data:`REGISTRY`, a registry of dicomflow's own (not
prometheus_client's process-global default): ``/metrics`` serves exactly this
registry plus the job gauges computed when it is scraped (see
:mod:`dicomflow.web.prometheus`), and a collector bound to one queue can be added to a
scrape without ever being registered twice in a shared registry. Counters count
for the whole process, which is what Prometheus scrapes; they are the one kind of
module-level state the package allows, because instrumented code (SCP threads,
the outbox, the job watcher) records into them without any object passed down.
Jobs run in worker processes, possibly on other machines, so job counts are never
counted here: they are read from the queue at scrape time.
"""

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

#: Stage names of :data:`STAGE_LATENCY`, each named by the event that ends it.
INPUTS_COMPLETE = "inputs_complete"  # last instance received -> the inputs are complete
JOB_STARTED = "job_started"  # inputs complete -> a worker started the job
JOB_FINISHED = "job_finished"  # job started -> job ended
ACKNOWLEDGED = "acknowledged"  # job ended -> the endpoint acknowledged the results
STAGES = (INPUTS_COMPLETE, JOB_STARTED, JOB_FINISHED, ACKNOWLEDGED)

#: Values of the ``kind`` label of :data:`STAGE_LATENCY`.
KIND_PIPELINE = "pipeline"  # a pipeline round: a patient's inputs
KIND_SERVICE = "service"  # a series batch for the registry services
KINDS = (KIND_PIPELINE, KIND_SERVICE)

#: From milliseconds (a C-STORE round trip) to hours (a long model run or a peer down).
LATENCY_BUCKETS = (
    *(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5),
    *(1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0),
    *(1800.0, 3600.0, 7200.0, 14400.0, 43200.0, 86400.0),
)

#: Values of the ``reason`` label of :data:`REJECTIONS`.
REASON_AE_TITLE = "ae_title"  # association from a calling AE title not allowed
REASON_CALLED_AE_TITLE = "called_ae_title"  # association asking for another AE title
REASON_IP = "ip"  # connection from an IP address not allowed
REASON_MALFORMED = "malformed"  # an instance that cannot be decoded
REASON_SOP_CLASS = "sop_class"  # a C-STORE on a context negotiated for another SOP class
REASON_MISMATCH = "dataset_mismatch"  # a dataset contradicting its command or itself
REASON_INVALID_VALUE = "invalid_value"  # a value (the patient identifier) unusable as a key
REASON_STORAGE_ERROR = "storage_error"  # the instance could not be stored durably
REASON_HANDLER_ERROR = "handler_error"  # storing failed unexpectedly
REASON_TOO_LARGE = "too_large"  # an instance over maximum_instance_bytes (association aborted)
REASON_MEMORY = "memory"  # instances being received would pass maximum_held_bytes (aborted)
REASON_NOT_ARCHIVABLE = "not_archivable"  # no valid Study/SeriesInstanceUID to archive it by
REASON_TLS = "tls"  # a connection to a DICOM TLS port whose TLS handshake failed
REASONS = (
    REASON_AE_TITLE,
    REASON_CALLED_AE_TITLE,
    REASON_IP,
    REASON_MALFORMED,
    REASON_SOP_CLASS,
    REASON_MISMATCH,
    REASON_INVALID_VALUE,
    REASON_STORAGE_ERROR,
    REASON_HANDLER_ERROR,
    REASON_TOO_LARGE,
    REASON_MEMORY,
    REASON_NOT_ARCHIVABLE,
    REASON_TLS,
)

INSTANCES_RECEIVED = Counter(
    "dicomflow_instances_received",
    "Instances received (by C-STORE or upload) and stored durably.",
    registry=REGISTRY,
)
INSTANCES_DISCARDED = Counter(
    "dicomflow_instances_discarded",
    "Instances acknowledged but not kept: they match no input of the pipeline.",
    registry=REGISTRY,
)
BYTES_RECEIVED = Counter(
    "dicomflow_received_bytes",
    "Bytes of instance data received by C-STORE or upload.",
    registry=REGISTRY,
)
ASSOCIATIONS = Counter(
    "dicomflow_associations",
    "DICOM associations accepted.",
    registry=REGISTRY,
)
ECHOES = Counter(
    "dicomflow_echoes",
    "C-ECHO requests answered.",
    registry=REGISTRY,
)
REJECTIONS = Counter(
    "dicomflow_rejections",
    "Associations, connections and instances refused, by reason.",
    ["reason"],
    registry=REGISTRY,
)
EXPORT_RETRIES = Counter(
    "dicomflow_export_retries",
    "Attempts to send results to an endpoint after the first attempt of a delivery.",
    registry=REGISTRY,
)
EXPORT_FAILURES = Counter(
    "dicomflow_export_failures",
    "Attempts to send results to an endpoint that failed (the endpoint was unreachable"
    " or refused).",
    registry=REGISTRY,
)
EXPORTS = Counter(
    "dicomflow_exports",
    "Outbox items handled: delivered completely, or kept for later after every retry.",
    ["outcome"],
    registry=REGISTRY,
)
INSTANCES_EXPORTED = Counter(
    "dicomflow_instances_exported",
    "Result instances acknowledged by an endpoint.",
    registry=REGISTRY,
)
INSTANCES_UNSENDABLE = Counter(
    "dicomflow_instances_unsendable",
    "Result instances set aside in outbox-unsendable/ because no retry would send them to"
    " their endpoint (unreadable, or compressed for a peer that takes only uncompressed"
    " syntaxes and not decodable).",
    registry=REGISTRY,
)
WORKER_RESTARTS = Counter(
    "dicomflow_worker_restarts",
    "Local queue workers started again after they ended while the node ran (killed, crashed).",
    registry=REGISTRY,
)
STAGE_LATENCY = Histogram(
    "dicomflow_stage_latency_seconds",
    "Time each stage took, for pipeline rounds and registry-service series batches"
    " (kind): last instance -> inputs complete, or series stable (inputs_complete) -> job"
    " started (job_started) -> job finished (job_finished) -> results acknowledged by the"
    " endpoint (acknowledged).",
    ["stage", "kind"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
JOURNAL_PENDING_BYTES = Gauge(
    "dicomflow_spool_journal_pending_bytes",
    "Bytes of instances acknowledged through the spool journal and not yet written into the spool.",
    registry=REGISTRY,
)
JOURNAL_CHECKPOINT = Histogram(
    "dicomflow_spool_journal_checkpoint_seconds",
    "Time a spool journal checkpoint took (writing the journaled instances into the"
    " spool and flushing them).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY,
)
JOURNAL_REPLAYED = Counter(
    "dicomflow_spool_journal_replayed",
    "Instances written back into the spool from the journal at start-up (the spool had"
    " lost them in a crash).",
    registry=REGISTRY,
)
SPOOL_WRITABLE = Gauge(
    "dicomflow_spool_writable",
    "1 while the spool can be written; 0 while a checkpoint fails (new instances are"
    " refused, acknowledged ones wait in the journal).",
    registry=REGISTRY,
)
SPOOL_WRITABLE.set(1)
for _stage in STAGES:  # every stage is exposed from the start, with zero observations
    for _kind in KINDS:
        STAGE_LATENCY.labels(stage=_stage, kind=_kind)
for _outcome in ("delivered", "kept"):
    EXPORTS.labels(outcome=_outcome)
for _reason in REASONS:
    REJECTIONS.labels(reason=_reason)


def observe_stage(
    stage: str, since: float | None, until: float | None = None, kind: str = KIND_PIPELINE
) -> None:
    """Record that ``stage`` of a ``kind`` (pipeline round or service batch) took from
    ``since`` to ``until`` (epoch seconds; now by default). Nothing is recorded when
    ``since`` is unknown; a negative span (clocks of two machines) counts as zero."""
    if since is None:
        return
    end = time.time() if until is None else until
    STAGE_LATENCY.labels(stage=stage, kind=kind).observe(max(end - since, 0.0))


def rejected(reason: str) -> None:
    """Count one refusal for ``reason`` (one of the ``REASON_*`` values)."""
    REJECTIONS.labels(reason=reason).inc()


__all__ = ["REGISTRY", "STAGES", "observe_stage", "rejected"]
