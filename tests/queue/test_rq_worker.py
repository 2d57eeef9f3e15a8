"""The RQ worker's own parts, against a real Redis server."""

import signal
import time
from pathlib import Path

from queue_support import TEST_OPTIONS, WorkerProcess
from redis import Redis

from dicomflow.queue.options import QueueOptions
from dicomflow.queue.rq.worker import RQWorker
from support import RedisServer, wait_for


def test_a_worker_stops_listening_at_once_after_the_listener_saw_the_unsubscription(
    redis: str,
) -> None:
    worker = RQWorker(Redis.from_url(redis), QueueOptions(), name="listener").new_rq_worker()
    worker.subscribe()
    assert worker.pubsub is not None
    try:
        wait_for(lambda: worker.pubsub.subscribed, 5, "the worker's subscription")
        # The listener handles the reply and then waits for a new subscription:
        # what happens when the thread wins the race against RQ's shutdown.
        worker.pubsub.unsubscribe()
        wait_for(lambda: not worker.pubsub.subscribed, 5, "the unsubscription")
        time.sleep(0.2)
        started = time.monotonic()
        worker.unsubscribe()
        assert time.monotonic() - started < 5
    finally:
        worker.connection.close()


def missed_redis(log: Path) -> bool:
    text = log.read_text()
    return any(sign in text for sign in ("starting again in", "could not connect", "quitting"))


def test_a_worker_waits_for_redis_and_stops_cleanly_meanwhile(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    log = tmp_path / "waiting.log"
    worker = WorkerProcess(f"{redis_server.url()}?{TEST_OPTIONS}", "waiting", log, burst=False)
    try:
        wait_for(lambda: "Listening on" in log.read_text(), 30, "the worker to listen")
        redis_server.process.kill()
        redis_server.process.wait(timeout=10)
        wait_for(lambda: missed_redis(log), 30, "the worker to miss Redis")
        time.sleep(1.0)
        assert worker.process.poll() is None, "the worker exited without Redis"

        worker.process.send_signal(signal.SIGTERM)
        assert worker.wait(timeout_s=20) == 0
    finally:
        worker.stop()
