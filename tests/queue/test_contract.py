"""The queue contract: one suite, run against the embedded (SQLite) and the RQ (Redis) backend.

Workers are real processes (``python -m dicomflow.queue URL``); job functions
are in ``jobs.py``.
"""

from pathlib import Path

import pytest
from queue_support import WorkerProcess, job, wait_for, wait_for_file, wait_gone

from dicomflow.errors import QueueError, UnknownDependencyError
from dicomflow.queue import Backend, Job, JobStatus, Priority, open_backend


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_priority_order_then_fifo(backend: Backend, start_worker, tmp_path: Path) -> None:
    out = tmp_path / "order.txt"
    order = [("low-1", "low"), ("default-1", "default"), ("high-1", "high")]
    order += [("low-2", "low"), ("default-2", "default"), ("high-2", "high")]
    queued = backend.enqueue_many(
        job("record", kwargs={"path": str(out), "label": label}, priority=Priority(priority))
        for label, priority in order
    )
    assert {queued_job.status for queued_job in queued} == {JobStatus.QUEUED}

    assert start_worker(burst=True).wait() == 0

    assert lines(out) == ["high-1", "high-2", "default-1", "default-2", "low-1", "low-2"]


def test_chain_and_fan_in(backend: Backend, start_worker, tmp_path: Path) -> None:
    out = tmp_path / "order.txt"

    def step(label: str, seconds: float = 0.0, after: tuple[str, ...] = ()):
        kwargs = {"path": str(out), "label": label, "seconds": seconds}
        return job("nap_and_record", kwargs=kwargs, depends_on=list(after))

    a = step("a")
    b = step("b", after=(a.id,))
    c = step("c", after=(b.id,))
    fans = [step("x1", 0.6), step("x2", 0.1), step("x3", 0.3)]
    fan_in = step("fan-in", after=tuple(fan.id for fan in fans))
    queued = backend.enqueue_many([a, b, c, *fans, fan_in])
    assert [queued_job.status for queued_job in queued] == [JobStatus.QUEUED] + [
        JobStatus.DEFERRED
    ] * 2 + [JobStatus.QUEUED] * 3 + [JobStatus.DEFERRED]

    start_worker("worker-1")
    start_worker("worker-2")
    for ended in (c, fan_in):
        assert wait_for(backend, ended.id).status is JobStatus.FINISHED

    done = lines(out)
    assert done.index("a") < done.index("b") < done.index("c")
    assert done.index("fan-in") > max(done.index(name) for name in ("x1", "x2", "x3"))
    assert backend.fetch(fan_in.id).started_at >= max(backend.fetch(f.id).ended_at for f in fans)


def test_failure_propagates_to_dependants(backend: Backend, start_worker, tmp_path: Path) -> None:
    out = tmp_path / "order.txt"
    root = job("fail", kwargs={"message": "bad input 42"})
    child = job("record", kwargs={"path": str(out), "label": "child"}, depends_on=[root.id])
    grandchild = job("record", kwargs={"path": str(out), "label": "gc"}, depends_on=[child.id])
    tolerant = job(
        "record",
        kwargs={"path": str(out), "label": "tolerant"},
        depends_on=[root.id],
        allow_dependency_failure=True,
    )
    backend.enqueue_many([root, child, grandchild, tolerant])

    start_worker()
    assert wait_for(backend, root.id).status is JobStatus.FAILED
    failed_child = wait_for(backend, child.id)
    failed_grandchild = wait_for(backend, grandchild.id)
    assert wait_for(backend, tolerant.id).status is JobStatus.FINISHED

    assert failed_child.status is JobStatus.FAILED
    assert failed_child.error == f"Dependency {root.id} failed."
    assert failed_grandchild.status is JobStatus.FAILED
    assert failed_grandchild.error == f"Dependency {child.id} failed."
    assert lines(out) == ["tolerant"]
    late = backend.enqueue(job("record", kwargs={"path": "x", "label": "x"}, depends_on=[root.id]))
    assert late.status is JobStatus.FAILED
    assert wait_for(backend, late.id).error == f"Dependency {root.id} failed."


def test_timeout_kills_the_process_group(backend: Backend, start_worker, tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    hung = backend.enqueue(job("hang", kwargs={"pid_file": str(pid_file)}, timeout_s=1.5))
    start_worker()

    pids = [int(pid) for pid in wait_for_file(pid_file).split()]
    ended = wait_for(backend, hung.id)

    assert ended.status is JobStatus.TIMED_OUT
    assert "timed out after 1.5 s" in (ended.error or "")
    assert all(wait_gone(pid) for pid in pids), f"still running: {pids}"


def test_retries_with_backoff(backend: Backend, start_worker, tmp_path: Path) -> None:
    attempts_file = tmp_path / "attempts"
    flaky = backend.enqueue(
        job(
            "fail_times",
            kwargs={"path": str(attempts_file), "failures": 2},
            retries=2,
            retry_backoff_s=1.0,
        )
    )
    start_worker()

    ended = wait_for(backend, flaky.id, timeout_s=30)

    assert ended.status is JobStatus.FINISHED
    assert ended.attempts == 3
    assert ended.result == 3
    times = [float(line) for line in lines(attempts_file)]
    assert len(times) == 3
    # Backoff 1 s, then 2 s (RQ's scheduler rounds to whole seconds, so at least 1 s in all).
    assert times[2] - times[0] >= 1.0


def test_a_failure_no_retry_can_fix_ends_the_job_at_once(
    backend: Backend, start_worker, tmp_path: Path
) -> None:
    out = tmp_path / "order.txt"
    refused = job("refuse", kwargs={"path": str(out)}, retries=3, retry_backoff_s=0.1)
    gone = job("give_up", kwargs={"path": str(out)}, retries=3, retry_backoff_s=0.1)
    dependant = job("record", kwargs={"path": str(out), "label": "x"}, depends_on=[refused.id])
    attempts_file = tmp_path / "attempts"
    ordinary = job(
        "fail_times",
        kwargs={"path": str(attempts_file), "failures": 1},
        retries=3,
        retry_backoff_s=0.1,
    )
    backend.enqueue_many([refused, gone, dependant, ordinary])
    start_worker()

    retried = wait_for(backend, ordinary.id, timeout_s=30)  # a retry had time to come
    assert retried.status is JobStatus.FINISHED and retried.attempts == 2
    ended = wait_for(backend, refused.id)
    assert ended.status is JobStatus.FAILED and ended.attempts == 1
    assert "not retried" in (ended.error or "")
    assert "DeidRefusedError: instance 1 (Secondary Capture" in (ended.error or "")
    own = wait_for(backend, gone.id)
    assert own.status is JobStatus.FAILED and own.attempts == 1
    assert "StudyGoneError: study 1.2.3 is gone" in (own.error or "")
    assert wait_for(backend, dependant.id).error == f"Dependency {refused.id} failed."
    assert sorted(lines(out)) == ["gave up", "refused"]


def test_cancel_queued_and_started_jobs(backend: Backend, start_worker, tmp_path: Path) -> None:
    waiting = backend.enqueue(job("record", kwargs={"path": "x", "label": "x"}))
    dependant = backend.enqueue(
        job("record", kwargs={"path": "x", "label": "y"}, depends_on=[waiting.id])
    )
    assert backend.cancel(waiting.id).status is JobStatus.CANCELED
    assert wait_for(backend, dependant.id).error == f"Dependency {waiting.id} was canceled."

    pid_file = tmp_path / "pids"
    running = backend.enqueue(job("hang", kwargs={"pid_file": str(pid_file)}, retries=3))
    start_worker()
    pids = [int(pid) for pid in wait_for_file(pid_file).split()]
    backend.cancel(running.id)

    assert wait_for(backend, running.id).status is JobStatus.CANCELED
    assert all(wait_gone(pid) for pid in pids), f"still running: {pids}"
    with pytest.raises(QueueError, match="cannot be canceled"):
        backend.cancel(running.id)
    after = backend.enqueue(job("record", kwargs={"path": str(tmp_path / "after"), "label": "z"}))
    assert wait_for(backend, after.id).status is JobStatus.FINISHED


def test_job_of_a_killed_worker_is_retried(backend: Backend, start_worker, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    stuck = backend.enqueue(job("hang_once", kwargs={"marker": str(marker)}))  # no retries
    first = start_worker("doomed")
    child_pid = int(wait_for_file(marker))

    first.kill9()
    assert wait_gone(child_pid), "the job's process outlived its killed worker"
    start_worker("rescuer")
    ended = wait_for(backend, stuck.id, timeout_s=45)

    assert ended.status is JobStatus.FINISHED
    assert ended.result == "done"
    assert (ended.attempts, ended.interruptions) == (2, 1)
    assert ended.worker == "rescuer"


def test_a_job_that_kills_its_worker_fails_past_max_interruptions(
    queue_url: str, tmp_path: Path
) -> None:
    url = f"{queue_url}&max_interruptions=1"
    backend = open_backend(url)
    runs = tmp_path / "runs.txt"
    workers: list[WorkerProcess] = []
    try:
        poison = backend.enqueue(job("kill_worker", kwargs={"path": str(runs)}, retries=2))
        for name in ("first", "second", "survivor"):
            workers.append(WorkerProcess(url, name, tmp_path / f"{name}.log", burst=False))
            if name != "survivor":
                workers[-1].wait(timeout_s=30)  # killed by its job
        ended = wait_for(backend, poison.id, timeout_s=45)
    finally:
        for worker in workers:
            worker.stop()
        backend.close()

    assert ended.status is JobStatus.FAILED
    assert ended.interruptions == 2 and len(lines(runs)) == 2
    assert "more than max_interruptions (1) allows" in (ended.error or "")


def test_output_exceptions_and_crashes_are_recorded(backend: Backend, start_worker) -> None:
    chatty = backend.enqueue(job("chatty", kwargs={"lines": 20_000}))
    raising = backend.enqueue(job("fail", kwargs={"message": "bad input 42"}))
    exiting = backend.enqueue(job("crash", kwargs={"code": 3}))
    killed = backend.enqueue(job("kill_self"))
    located = backend.enqueue(job("where"))
    start_worker(burst=True).wait()

    said = wait_for(backend, chatty.id)
    assert said.status is JobStatus.FINISHED and said.result == 20_000
    tail = (said.log_tail or "").splitlines()
    assert 100 < len(tail) <= 200
    assert "line 19999" in tail and "written to stderr" in tail[-1]
    assert any("WARNING jobs: a logged warning" in line for line in tail)
    raised = wait_for(backend, raising.id)
    assert raised.status is JobStatus.FAILED and raised.attempts == 1
    assert "Traceback" in (raised.error or "") and "ValueError: bad input 42" in raised.error
    assert "exited with code 3" in (wait_for(backend, exiting.id).error or "")
    assert "killed by SIGKILL" in (wait_for(backend, killed.id).error or "")
    workdir = wait_for(backend, located.id).result["cwd"]
    assert not Path(workdir).exists()


def test_two_workers_run_each_job_once(backend: Backend, start_worker, tmp_path: Path) -> None:
    out = tmp_path / "runs.txt"
    labels = [str(number) for number in range(60)]
    backend.enqueue_many(job("record", kwargs={"path": str(out), "label": x}) for x in labels)

    workers = [start_worker(f"worker-{n}", burst=True) for n in (1, 2)]
    for worker in workers:
        worker.wait()

    assert sorted(lines(out), key=int) == labels
    assert {j.status for j in backend.jobs(limit=100)} == {JobStatus.FINISHED}


def test_unknown_dependency_and_bad_jobs_are_refused(backend: Backend) -> None:
    with pytest.raises(UnknownDependencyError, match="nope"):
        backend.enqueue(job("record", depends_on=["nope"]))
    with pytest.raises(QueueError, match="not a name"):
        backend.enqueue(Job(function="no function"))
    with pytest.raises(QueueError, match="timeout_s"):
        backend.enqueue(job("record", timeout_s=0))
    with pytest.raises(QueueError, match="JSON"):
        backend.enqueue(job("record", kwargs={"path": object()}))
    assert backend.jobs() == []


def test_requeue_a_failed_job(backend: Backend, start_worker, tmp_path: Path) -> None:
    flaky = backend.enqueue(job("fail_times", kwargs={"path": str(tmp_path / "n"), "failures": 1}))
    start_worker()
    assert wait_for(backend, flaky.id).status is JobStatus.FAILED

    requeued = backend.requeue(flaky.id)

    assert requeued.status is JobStatus.QUEUED and requeued.attempts == 0
    ended = wait_for(backend, flaky.id)
    assert ended.status is JobStatus.FINISHED and ended.result == 2 and ended.attempts == 1
