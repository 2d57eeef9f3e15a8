"""Registry services on the real embedded queue: one series scheduled, run by a worker."""

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from service_files import AddService

from dicomflow.queue.backend import Backend, open_backend
from dicomflow.queue.job import JobStatus
from dicomflow.services.registry import Registry
from dicomflow.services.scheduler import schedule_series

pytest.importorskip(
    "dicomflow.queue.embedded.backend", reason="the embedded queue is not built yet"
)

CALLBACKS = """
def always(**kwargs):
    return True


def inject(jobName, headers, **kwargs):
    return True, {"modality": headers["Modality"]}
"""

MODULE = {
    "work.py": """
        import json
        import pathlib

        def run(jobName, added_params, output_dir, **kwargs):
            pathlib.Path(output_dir, jobName + ".json").write_text(json.dumps(added_params))

        def fail(**kwargs):
            raise RuntimeError("worker failed on purpose")
        """
}


def job(name: str, callback: str = "always", **fields: object) -> dict[str, object]:
    return {"jobName": name, "worker": "work.run", "callback": callback, **fields}


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[Backend]:
    queue = open_backend(f"sqlite:///{tmp_path / 'jobs.db'}")
    yield queue
    queue.close()


def test_a_series_runs_through_the_embedded_queue(
    root: Path, add_service: AddService, backend: Backend, tmp_path: Path
) -> None:
    add_service("brain", [job("seg", "inject"), job("report", dependsOn="seg")], CALLBACKS, MODULE)
    jobs = Registry(root).load().jobs
    out = tmp_path / "out"
    out.mkdir()
    report = schedule_series(
        jobs, {"Modality": "CT"}, backend, series_key="1.2.3", base_kwargs={"output_dir": out}
    )
    backend.worker(name="test").work(burst=True)
    for job_id in (o.job_id for o in report.outcomes):
        assert job_id is not None
        fetched = backend.fetch(job_id)
        assert fetched is not None and fetched.status is JobStatus.FINISHED, fetched
    assert json.loads((out / "report.json").read_text()) == {"seg": {"modality": "CT"}}


def test_a_failed_worker_never_leaves_its_dependants_waiting(
    root: Path, add_service: AddService, backend: Backend, tmp_path: Path
) -> None:
    settings = [job("seg", worker="work.fail"), job("report", dependsOn="seg")]
    add_service("brain", settings, CALLBACKS, MODULE)
    jobs = Registry(root).load().jobs
    base = {"output_dir": tmp_path}
    report = schedule_series(jobs, {}, backend, series_key="s", base_kwargs=base)
    backend.worker(name="test").work(burst=True)
    ids = {o.job_name: o.job_id for o in report.outcomes}
    seg, dependant = backend.fetch(str(ids["seg"])), backend.fetch(str(ids["report"]))
    assert seg is not None and seg.status is JobStatus.FAILED
    assert "worker failed on purpose" in f"{seg.error}{seg.log_tail}"
    assert dependant is not None and dependant.status.is_terminal
    assert dependant.status is not JobStatus.FINISHED
    assert not (tmp_path / "report.json").exists()
