"""The RQ worker's own parts, against a real Redis server."""

import time

from redis import Redis

from dicomflow.queue.options import QueueOptions
from dicomflow.queue.rq_worker import RQWorker
from support import wait_for


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
