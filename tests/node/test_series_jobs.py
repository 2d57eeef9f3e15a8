"""A series round's jobs.json: the file as written until now loads, and is written back
byte for byte."""

from pathlib import Path

from dicomflow.engine.series_jobs import JOBS_FILE, JobEnd, SeriesJobs, read_jobs, write_jobs
from dicomflow.queue.job import JobStatus

# A jobs.json as the node writes it (json.dumps, indent 2, no final newline).
TODAY = """{
  "job_ids": {
    "measure": "3b0f6c1e2a",
    "mask": "9d4e7a2b11"
  },
  "errors": {
    "segment": "Not scheduled: no GPU"
  },
  "ended": {
    "measure": {
      "status": "finished",
      "error": null
    },
    "mask": {
      "status": "failed",
      "error": "Results not fetched: the datastore did not answer"
    }
  },
  "sent": [
    "measure"
  ]
}"""


def test_a_jobs_file_in_todays_format_loads_as_a_typed_record(tmp_path: Path):
    (tmp_path / JOBS_FILE).write_text(TODAY)

    jobs = read_jobs(tmp_path)

    assert jobs == SeriesJobs(
        job_ids={"measure": "3b0f6c1e2a", "mask": "9d4e7a2b11"},
        errors={"segment": "Not scheduled: no GPU"},
        ended={
            "measure": JobEnd(JobStatus.FINISHED, None),
            "mask": JobEnd(JobStatus.FAILED, "Results not fetched: the datastore did not answer"),
        },
        sent=["measure"],
    )
    assert jobs.waiting == {} and jobs.all_ended


def test_a_jobs_file_is_written_back_exactly_as_before(tmp_path: Path):
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    (tmp_path / "old" / JOBS_FILE).write_text(TODAY)

    write_jobs(tmp_path / "new", read_jobs(tmp_path / "old"))

    assert (tmp_path / "new" / JOBS_FILE).read_text() == TODAY
    assert not (tmp_path / "new" / f"{JOBS_FILE}.part").exists()


def test_without_a_jobs_file_nothing_is_scheduled_or_sent(tmp_path: Path):
    jobs = read_jobs(tmp_path)

    assert jobs == SeriesJobs() and jobs.sent == [] and jobs.all_ended


def test_a_jobs_file_without_a_sent_list_loads(tmp_path: Path):
    (tmp_path / JOBS_FILE).write_text('{"job_ids": {"measure": "1"}, "errors": {}, "ended": {}}')

    jobs = read_jobs(tmp_path)

    assert jobs.sent == [] and jobs.waiting == {"measure": "1"} and not jobs.all_ended
