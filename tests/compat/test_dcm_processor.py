"""dcm-processor's registry services run unchanged on a dicomflow node.

The fixture writes four services shaped as the seed's ``temp``, ``dcm2nii``,
``ms-sub`` and ``base`` (same file layout, settings.json fields and function
signatures; the code is written for this test): registry ``__init__.py`` files
that re-export, ``"service.function"`` callbacks and workers, a hyphenated
service name, module-level ``os.getenv("DATA")``, a ``dcm2niix`` binary shipped in
``module/`` without its execute bit, and the seed scheduler's ``settings.json`` with
``headerFields``, ``preServices`` and ``postServices``. A series goes in with dcmtk's
``storescu`` to a node on the embedded queue.
"""

import gzip
import json
import re
import shutil
import tarfile
import textwrap
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from dicomflow.cli.service import app
from dicomflow.dicom.factory import make_ct_series, write_series
from dicomflow.dicom.keys import value_key
from dicomflow.engine.node import Node
from dicomflow.errors import ServiceDefinitionError
from dicomflow.queue.backend import open_backend
from dicomflow.queue.job import JobStatus
from dicomflow.services.consumer import ServiceScheduler
from dicomflow.services.definitions import read_settings, worker_parts
from dicomflow.services.headers import series_headers
from dicomflow.services.install import install
from dicomflow.services.registry import Registry
from dicomflow.settings import build_settings
from support import storescu, wait_for

DCM2NIIX = shutil.which("dcm2niix")
HEADER_FIELDS = ["PerformedProcedureStepDescription", "seriesId", "dcmpath", "PatientID"]


def job(name: str, worker: str, callback: str, **fields: Any) -> dict[str, Any]:
    """A job object with every field the seed's services write."""
    return {
        "jobName": name,
        "worker": worker,
        "callback": callback,
        "dependsOn": None,
        "priority": "default",
        "channel": "default",
        "timeout": "1h",
        "params": None,
        "sortPosition": 0,
        "description": f"{name} (test)",
        **fields,
    }


def write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")


RECORD = """
    import json, os

    DATA = os.getenv("DATA")  # read at import, as the seed's modules do


    def record(name, **values):
        folder = os.path.join(DATA, "records")
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, name + ".json"), "w") as file:
            json.dump(values, file)
"""


def temp_service(folder: Path, settings: list[dict[str, Any]] | None = None) -> Path:
    """The seed's template service: callback and worker re-exported by ``__init__.py``."""
    jobs = settings or [
        job("tempJob", "temp.worker", "temp.callback", priority="medium"),
        job("tempOff", "temp.worker", "temp.callback", disabled=True),
    ]
    write(
        folder / "registry",
        {
            "__init__.py": "from .main import callback\n",
            "main.py": """
                def callback(jobName, headers, params, added_params, **kwargs):
                    return True, {"custom-data": "Some new data"}
            """,
            "settings.json": json.dumps(jobs),
        },
    )
    write(
        folder / "module",
        {
            "__init__.py": "from .main import worker\n",
            "record.py": RECORD,
            "main.py": """
                import os
                from .record import record

                LOGS, MODULES = os.getenv("LOGS"), os.getenv("MODULES")


                def worker(jobName, headers, params, added_params, **kwargs):
                    record(jobName, headers=headers, params=params, added_params=added_params,
                           env=[os.getenv("DATA"), LOGS, MODULES])
            """,
        },
    )
    return folder


def dcm2nii_service(folder: Path) -> Path:
    """The seed's dcm2nii: output paths from ``seriesId``, its own ``dcm2niix`` binary."""
    params = {"clean": False}
    settings = [job("dcm2nii", "dcm2nii.worker", "dcm2nii.callback", params=params)]
    write(
        folder / "registry",
        {
            "__init__.py": """
                import os

                def callback(jobName, headers, params, added_params, **kwargs):
                    injected = {}
                    if "seriesId" in headers:
                        series_id = headers.get("seriesId")
                        injected["output"] = os.path.join("nifti", f"{series_id}.nii.gz")
                        injected["base"] = "nifti"
                        injected["filename"] = f"{series_id}"
                    return True, injected
            """,
            "settings.json": json.dumps(settings),
        },
    )
    write(
        folder / "module",
        {
            "__init__.py": """
                import os

                DATA = os.getenv("DATA")
                dir_path = os.path.dirname(os.path.realpath(__file__))

                def worker(jobName, headers, params, added_params, **kwargs):
                    mine = added_params.get(jobName)
                    base, filename = mine.get("base"), mine.get("filename")
                    full_base = os.path.join(DATA, base)
                    os.makedirs(full_base, exist_ok=True)
                    dcm_path = os.path.join(DATA, headers.get("dcmpath"))
                    command = f"{dir_path}/dcm2niix -z y -b n -f {filename} -o {full_base} "
                    command += dcm_path
                    if os.system(command) != 0:
                        raise RuntimeError(f"{command} failed")
            """,
        },
    )
    assert DCM2NIIX is not None
    shutil.copyfile(DCM2NIIX, folder / "module" / "dcm2niix")  # no execute bit, as in git
    return folder


def ms_sub_service(folder: Path) -> Path:
    """The seed's ms-sub: hyphenated, depends on dcm2nii, reads its added_params."""
    settings = [job("ms-sub", "ms-sub.worker", "ms-sub.callback", dependsOn="dcm2nii")]
    write(
        folder / "registry",
        {
            "__init__.py": """
                def callback(jobName, headers, params, added_params, **kwargs):
                    added_params["dcm2nii"]["seen_by"] = jobName  # in place, as the seed allows
                    return True, {}
            """,
            "settings.json": json.dumps(settings),
        },
    )
    write(
        folder / "module",
        {
            "__init__.py": """
                import os
                import pydicom
                from .record import record

                def worker(jobName, headers, params, added_params, **kwargs):
                    dcm_path = os.path.join(os.getenv("DATA"), headers.get("dcmpath"))
                    first = pydicom.dcmread(os.path.join(dcm_path, sorted(os.listdir(dcm_path))[0]))
                    if first.PerformedProcedureStepDescription == "mssub":
                        nifti = os.path.join(os.getenv("DATA"), added_params["dcm2nii"]["output"])
                        record(jobName, nifti=nifti, patient_name=str(first.PatientName))
            """,
            "record.py": RECORD,
        },
    )
    return folder


def base_service(folder: Path) -> Path:
    """The seed's base: no settings.json; scheduler.json runs its anonymiser before the
    registry's jobs, its storage manager and system cleaner after them."""
    write(
        folder / "registry",
        {
            "__init__.py": """
                def dicomAnonymizer(jobName, headers, params, added_params, **kwargs):
                    return True, {"deleted": [headers["dcmpath"]]}

                def systemcleaner(jobName, headers, params, added_params, **kwargs):
                    return True, {}

                def storageManager(jobName, headers, params, added_params, **kwargs):
                    return True, {}
            """
        },
    )
    write(
        folder / "module",
        {
            "record.py": RECORD,
            "DicomAnonymizerService/__init__.py": """
                import os
                import pydicom

                DATA = os.getenv("DATA", "/data")

                def worker(jobName, headers, params, added_params, **kwargs):
                    folder = os.path.join(DATA, headers.get("dcmpath"))
                    for name in os.listdir(folder):
                        dataset = pydicom.dcmread(os.path.join(folder, name))
                        dataset.PatientName = "ANONYMOUS"
                        dataset.save_as(os.path.join(folder, name))
            """,
            "storageManager/__init__.py": "from .main import worker\n",
            "storageManager/main.py": """
                from record import record

                def worker(jobName, headers, params, added_params, **kwargs):
                    record(jobName, added_params=added_params)
            """,
            "systemcleaner/__init__.py": """
                import os, shutil

                DATA = os.getenv("DATA", "/data")

                def worker(jobName, headers, params, added_params, **kwargs):
                    for values in added_params.values():
                        for name in values.get("deleted", []):
                            shutil.rmtree(os.path.join(DATA, name))
            """,
        },
    )
    return folder


def scheduler_settings() -> dict[str, Any]:
    """The seed scheduler's settings.json, its job objects as written there."""
    pre = [job("dicomAnonymizer", "base.DicomAnonymizerService.worker", "base.dicomAnonymizer")]
    post = [
        job("storageManager", "base.storageManager.worker", "base.storageManager"),
        job(
            "systemClearner",
            "base.systemcleaner.worker",
            "base.systemcleaner",
            dependsOn="storageManager",
            sortPosition=1,
        ),
    ]
    return {"headerFields": HEADER_FIELDS, "preServices": pre, "postServices": post}


@pytest.fixture
def seed_root(tmp_path: Path) -> Path:
    """A registry root with the four services installed and the scheduler's settings."""
    sources, root = tmp_path / "sources", tmp_path / "services"
    install("temp", temp_service(sources / "temp"), root)
    install("dcm2nii", dcm2nii_service(sources / "dcm2nii"), root)
    install("ms-sub", ms_sub_service(sources / "ms-sub"), root)
    install("base", base_service(sources / "base"), root)
    (root / "scheduler.json").write_text(json.dumps(scheduler_settings()), encoding="utf-8")
    return root


def finished(url: str, count: int) -> dict[str, JobStatus]:
    backend = open_backend(url)
    try:
        wait_for(
            lambda: (
                len(jobs := backend.jobs()) == count
                and all(job.status in (JobStatus.FINISHED, JobStatus.FAILED) for job in jobs)
            ),
            120,
            f"{count} jobs to end",
        )
        return {job.name: job.status for job in backend.jobs()}
    finally:
        backend.close()


def is_nifti_gz(path: Path) -> bool:
    """A gzipped NIfTI-1 file: header size 348 and magic ``n+1``."""
    with gzip.open(path) as file:
        header = file.read(348)
    return int.from_bytes(header[:4], "little") == 348 and header[344:347] == b"n+1"


@pytest.mark.skipif(DCM2NIIX is None, reason="dcm2niix is installed by scripts/bootstrap.sh")
def test_the_four_seed_services_run_end_to_end(tmp_path: Path, seed_root: Path) -> None:
    url = f"sqlite:///{tmp_path / 'data' / 'queue.db'}"
    settings = build_settings(
        port=0,
        data_directory=tmp_path / "data",
        services_directory=seed_root,
        queue_url=url,
        queue_workers=2,
        series_quiet_period_s=0.5,
    )
    node = Node(None, settings, ServiceScheduler(seed_root, url))
    node.start()
    series = make_ct_series(6, modality="MR", patient_id="PAT-1")
    for dataset in series:
        dataset.PerformedProcedureStepDescription = "mssub"
    try:
        storescu(node.port, write_series(series, tmp_path / "in"))
        statuses = finished(url, 6)
    finally:
        node.stop()
    data = seed_root / "data"
    records = {p.stem: json.loads(p.read_text()) for p in (data / "records").glob("*.json")}
    series_id = value_key(series[0].SeriesInstanceUID)
    # Every job ran; the disabled one was never scheduled.
    assert set(statuses.values()) == {JobStatus.FINISHED}
    assert set(statuses) == {
        "dicomAnonymizer",
        "tempJob",
        "dcm2nii",
        "ms-sub",
        "storageManager",
        "systemClearner",
    }
    # Headers: the seed's fields, filtered by headerFields; dcmpath under DATA.
    temp = records["tempJob"]
    assert temp["headers"] == {
        "InstanceCount": 6,
        "PerformedProcedureStepDescription": "mssub",
        "seriesId": series_id,
        "dcmpath": f"dicom/{series_id}",
        "PatientID": "PAT-1",
    }
    assert temp["params"] == {}  # "params": null
    # DATA, LOGS and MODULES: real folders.
    assert temp["env"] == [str(data), str(seed_root / "logs"), str(seed_root / "modules")]
    assert all(Path(folder).is_dir() for folder in temp["env"])
    # dcm2nii ran its own (shipped) dcm2niix and wrote a real NIfTI file.
    nifti = data / "nifti" / f"{series_id}.nii.gz"
    assert is_nifti_gz(nifti)
    assert records["ms-sub"] == {"nifti": str(nifti), "patient_name": "ANONYMOUS"}  # pre first
    # A callback's in-place change of added_params reached the later callbacks' workers.
    added = records["storageManager"]["added_params"]
    assert added["dcm2nii"]["seen_by"] == "ms-sub"
    assert added["tempJob"] == {"custom-data": "Some new data"}
    # The post job removed the series' copy under DATA.
    assert not (data / "dicom" / series_id).exists()


def test_install_over_an_installed_service_replaces_it_with_a_backup(tmp_path: Path) -> None:
    root = tmp_path / "services"
    first = temp_service(tmp_path / "one")
    second = temp_service(tmp_path / "two", [job("newJob", "temp.worker", "temp.callback")])
    runner = CliRunner()
    assert runner.invoke(app, ["install", "temp", "-p", str(first), "-r", str(root)]).exit_code == 0
    result = runner.invoke(app, ["install", "temp", "-p", str(second), "-r", str(root)])
    assert result.exit_code == 0, result.output
    match = re.search(r"backed up to (\S+\.tar\.gz)", result.output.replace("\n", ""))
    assert match is not None, result.output
    with tarfile.open(match[1]) as tar:
        member = tar.extractfile("temp/registry/settings.json")
        assert member is not None and b"tempJob" in member.read()
    assert [spec.job_name for spec in Registry(root).read_specs()] == ["newJob"]


def test_a_broken_scheduler_settings_names_the_file_and_field(tmp_path: Path) -> None:
    root = tmp_path / "services"
    install("base", base_service(tmp_path / "base"), root)
    (root / "scheduler.json").write_text(json.dumps({"headerFields": "PatientID"}))
    report = Registry(root).load()
    error = str(report.errors["scheduler.json"])
    assert f'{root / "scheduler.json"}: field "headerFields" is "PatientID"' in error
    with pytest.raises(ServiceDefinitionError, match=re.escape("scheduler.json")):
        report.raise_errors()


def test_seed_job_fields_are_read_with_their_meaning(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    fields = {"dependsOn": None, "params": None, "priority": "medium", "channel": "gpu"}
    entries = [job("ms-sub", "ms-sub.worker", "ms-sub.callback", **fields)]
    entries.append(job("off", "temp.worker", "temp.callback", disabled=True))
    path.write_text(json.dumps(entries))
    seg, off = read_settings(path, "ms-sub")
    assert (seg.depends_on, seg.params, seg.priority, seg.channel) == ((), {}, "default", "gpu")
    assert worker_parts(seg.worker) == ("ms-sub", "worker")
    assert (seg.disabled, off.disabled) == (False, True)


def test_headers_never_put_a_raw_dicom_value_in_dcmpath(tmp_path: Path) -> None:
    series = make_ct_series(2, patient_id="../../escape")
    files = write_series(series, tmp_path / "in")
    data = tmp_path / "data"
    headers = series_headers(files, data, None)
    series_id = value_key(series[0].SeriesInstanceUID)
    assert headers["PatientID"] == "../../escape"
    assert headers["patientId"] == value_key("../../escape")
    assert headers["dcmpath"] == f"dicom/{series_id}"
    assert sorted(p.name for p in (data / "dicom" / series_id).iterdir()) == [p.name for p in files]
    assert [p.name for p in data.iterdir()] == ["dicom"]
