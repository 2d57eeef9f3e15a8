"""The trigger: which patients are checked, and when."""

import threading
import time
from collections.abc import Iterator

import pytest

from dicomflow.engine.trigger import Trigger

QUIET_S = 0.5


class Checks:
    """Records the checks the trigger runs; raises for the patients in ``failing``."""

    def __init__(self, failing: tuple[str, ...] = ()) -> None:
        self.calls: list[tuple[str, float]] = []
        self.failing = failing
        self.changed = threading.Condition()

    def __call__(self, patient_key: str) -> None:
        with self.changed:
            self.calls.append((patient_key, time.monotonic()))
            self.changed.notify_all()
        if patient_key in self.failing:
            raise RuntimeError(f"check of {patient_key} failed")

    def patients(self) -> list[str]:
        with self.changed:
            return [patient for patient, _ in self.calls]

    def wait_for(self, count: int, timeout_s: float = 5.0) -> list[str]:
        with self.changed:
            self.changed.wait_for(lambda: len(self.calls) >= count, timeout_s)
        return self.patients()


@pytest.fixture
def checks() -> Checks:
    return Checks()


@pytest.fixture
def trigger(checks: Checks) -> Iterator[Trigger]:
    trigger = Trigger(checks, quiet_period_s=None)
    trigger.start()
    yield trigger
    trigger.stop()


@pytest.fixture
def quiet_trigger(checks: Checks) -> Iterator[Trigger]:
    trigger = Trigger(checks, quiet_period_s=QUIET_S)
    trigger.start()
    yield trigger
    trigger.stop()


def test_release_checks_the_patients_of_that_association_only(trigger: Trigger, checks: Checks):
    trigger.arrived(1, "alice")
    trigger.arrived(1, "bob")
    trigger.arrived(1, "alice")
    trigger.arrived(2, "carol")
    trigger.released(1)
    assert sorted(checks.wait_for(2)) == ["alice", "bob"]
    time.sleep(0.1)
    assert sorted(checks.patients()) == ["alice", "bob"], "carol's association is still open"
    trigger.released(2)
    assert checks.wait_for(3)[2:] == ["carol"]


def test_without_release_or_quiet_period_nothing_is_checked(trigger: Trigger, checks: Checks):
    trigger.arrived(1, "alice")
    trigger.released(99)  # another association, which sent nothing
    time.sleep(0.3)
    assert checks.patients() == []


def test_a_second_release_of_the_same_association_checks_nothing(trigger: Trigger, checks: Checks):
    trigger.arrived(1, "alice")
    trigger.released(1)
    checks.wait_for(1)
    trigger.released(1)  # an abort after the release
    time.sleep(0.2)
    assert checks.patients() == ["alice"]


def test_quiet_period_fires_once_after_the_last_arrival(quiet_trigger: Trigger, checks: Checks):
    quiet_trigger.arrived(1, "alice")
    time.sleep(QUIET_S * 0.6)
    last = time.monotonic()
    quiet_trigger.arrived(1, "alice")
    time.sleep(QUIET_S * 0.6)
    assert checks.patients() == [], "not before the quiet period after the last arrival"
    assert checks.wait_for(1) == ["alice"]
    assert checks.calls[0][1] - last >= QUIET_S
    time.sleep(QUIET_S * 2)
    assert checks.patients() == ["alice"], "once only"


def test_quiet_period_is_kept_per_patient(quiet_trigger: Trigger, checks: Checks):
    quiet_trigger.arrived(1, "alice")
    time.sleep(QUIET_S / 2)
    bob_arrived = time.monotonic()
    quiet_trigger.arrived(2, "bob")
    assert checks.wait_for(1) == ["alice"]
    assert checks.wait_for(2) == ["alice", "bob"]
    assert checks.calls[1][1] - bob_arrived >= QUIET_S, "bob's own quiet period"


def test_a_check_that_raises_does_not_stop_the_trigger(caplog: pytest.LogCaptureFixture):
    checks = Checks(failing=("alice",))
    trigger = Trigger(checks, quiet_period_s=None)
    trigger.start()
    try:
        trigger.request("alice")
        trigger.request("bob")
        assert checks.wait_for(2) == ["alice", "bob"]
        trigger.arrived(7, "carol")
        trigger.released(7)
        assert checks.wait_for(3) == ["alice", "bob", "carol"]
    finally:
        trigger.stop()
    assert "checking its inputs failed" in caplog.text


def test_stop_ends_the_thread_promptly(checks: Checks):
    trigger = Trigger(checks, quiet_period_s=60)
    trigger.start()
    trigger.arrived(1, "alice")
    started = time.monotonic()
    trigger.stop()
    assert time.monotonic() - started < 2
    assert checks.patients() == []
