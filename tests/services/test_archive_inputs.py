"""Service jobs that read their series from the archive and leave their results there."""

import sys
from pathlib import Path

import pytest
from service_files import write_files

from dicomflow.cod import CODObject, Instance
from dicomflow.cod.transfer import ArchivedSeries, list_files, staging_url
from dicomflow.dicom.factory import make_ct_series, write_series
from dicomflow.errors import CODError, CODNotFoundError
from dicomflow.queue.backend import open_backend
from dicomflow.queue.job import Job, JobStatus
from dicomflow.services.job_spec import JobSpec
from dicomflow.services.registry import RegisteredJob
from dicomflow.services.runner import run_service_job
from dicomflow.services.scheduler import schedule_series

COPIER = """
    import pathlib, shutil

    def run(jobName, input_dir, output_dir, **kwargs):
        names = sorted(p.name for p in pathlib.Path(input_dir).glob("*.dcm"))
        pathlib.Path(output_dir, "seen.txt").write_text(input_dir + "\\n" + "\\n".join(names))
        for path in pathlib.Path(input_dir).glob("*.dcm"):
            shutil.copy(path, pathlib.Path(output_dir, "copy-" + path.name))
    """


def archive(datastore: str, folder: Path, count: int) -> tuple[ArchivedSeries, dict[str, Path]]:
    """Archive a CT series; return it and its files by SOPInstanceUID."""
    datasets = make_ct_series(count, rows=8, columns=8)
    paths = write_series(datasets, folder)
    study_uid, series_uid = str(datasets[0].StudyInstanceUID), str(datasets[0].SeriesInstanceUID)
    with CODObject(datastore, study_uid, series_uid, lock=True) as cod:
        cod.append([Instance(str(path)) for path in paths])
        cod.sync()
    files = {str(ds.SOPInstanceUID): path for ds, path in zip(datasets, paths, strict=True)}
    return ArchivedSeries(datastore, study_uid, series_uid, tuple(files)), files


def kwargs_for(module_dir: Path, **extra: object) -> dict[str, object]:
    service = {"name": "svc", "worker": "copier:run", "module_dir": str(module_dir)}
    return {"service": service, "jobName": "copy", "headers": {}, "params": {}, **extra}


def test_a_job_reads_the_archive_and_uploads_its_results(tmp_path: Path) -> None:
    datastore = str(tmp_path / "datastore")
    archived, files = archive(datastore, tmp_path / "ct", 3)
    write_files(tmp_path / "module", {"copier.py": COPIER})
    output_url = staging_url(datastore)
    two = sorted(files)[:2]
    only_two = ArchivedSeries(
        archived.datastore, archived.study_uid, archived.series_uid, tuple(two)
    )
    run_service_job(
        **kwargs_for(tmp_path / "module", archive_input=only_two.to_kwargs(), output_url=output_url)
    )
    uploaded = list_files(f"{output_url}/copy")
    assert [url.rsplit("/", 1)[-1] for url in uploaded] == [f"copy-{uid}.dcm" for uid in two]
    for url, uid in zip(uploaded, two, strict=True):
        assert Path(url).read_bytes() == files[uid].read_bytes()
    assert not Path(output_url, "copy", "seen.txt").exists()  # only DICOM files go back


def test_the_scratch_folders_are_removed_even_when_the_worker_fails(tmp_path: Path) -> None:
    datastore = str(tmp_path / "datastore")
    archived, _ = archive(datastore, tmp_path / "ct", 1)
    write_files(
        tmp_path / "module",
        {
            "copier.py": "import pathlib\nSEEN = []\ndef run(input_dir, **kw):\n"
            "    SEEN.append(input_dir)\n    raise RuntimeError('worker broke')\n"
        },
    )

    output_url = staging_url(datastore)
    sys.path.insert(0, str(tmp_path / "module"))
    try:
        import copier  # type: ignore[import-not-found]

        with pytest.raises(RuntimeError, match="worker broke"):
            run_service_job(
                **kwargs_for(
                    tmp_path / "module", archive_input=archived.to_kwargs(), output_url=output_url
                )
            )
    finally:
        sys.path.remove(str(tmp_path / "module"))
    assert copier.SEEN and not Path(copier.SEEN[0]).exists()
    assert list_files(f"{output_url}/copy") == []


def test_a_missing_instance_or_bad_input_fails_the_job(tmp_path: Path) -> None:
    datastore = str(tmp_path / "datastore")
    archived, _ = archive(datastore, tmp_path / "ct", 1)
    write_files(tmp_path / "module", {"copier.py": COPIER})
    missing = {**archived.to_kwargs(), "sop_instance_uids": ["1.2.3.4"]}
    with pytest.raises(CODNotFoundError):
        run_service_job(**kwargs_for(tmp_path / "module", archive_input=missing))
    with pytest.raises(CODError, match="datastore"):
        run_service_job(**kwargs_for(tmp_path / "module", archive_input={"study_uid": "1.2"}))
    hostile = {**archived.to_kwargs(), "series_uid": "../../x"}
    with pytest.raises(ValueError):
        run_service_job(**kwargs_for(tmp_path / "module", archive_input=hostile))


def test_service_jobs_wait_for_the_archive_job_and_fail_with_it(tmp_path: Path) -> None:
    backend = open_backend(f"sqlite:///{tmp_path / 'queue.db'}")
    archive_job = backend.enqueue(Job(function="dicomflow.engine.series_archive:archive_series"))
    specs = [JobSpec("seg", "work.run", "always", service="svc")]
    specs.append(JobSpec("report", "work.run", "always", depends_on=("seg",), service="svc"))
    jobs = [RegisteredJob(spec, lambda **_: True, tmp_path) for spec in specs]
    report = schedule_series(
        jobs, {"Modality": "CT"}, backend, series_key="s", after=[archive_job.id]
    )
    seg, later = (backend.fetch(report.outcome(name).job_id or "") for name in ("seg", "report"))
    assert seg is not None and later is not None
    assert archive_job.id in seg.depends_on and archive_job.id in later.depends_on
    assert {seg.status, later.status} == {JobStatus.DEFERRED}
    backend.cancel(archive_job.id)
    for name in ("seg", "report"):
        ended = backend.fetch(report.outcome(name).job_id or "")
        assert ended is not None and ended.status is JobStatus.FAILED
    backend.close()
