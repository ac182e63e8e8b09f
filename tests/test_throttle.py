"""Throttle: request starts at least 60/rate seconds apart, on a fake clock."""

from __future__ import annotations

from cryptolake.throttle import Throttle

from .conftest import FakeTime


def test_first_call_does_not_wait_and_later_calls_are_spaced(fake_time: FakeTime) -> None:
    throttle = Throttle(30, clock=fake_time.clock, sleep=fake_time.sleep)

    waits = [throttle.wait() for _ in range(4)]

    assert throttle.interval == 2.0
    assert waits == [0.0, 2.0, 2.0, 2.0]
    assert fake_time.sleeps == [2.0, 2.0, 2.0]
    assert fake_time.elapsed == 6.0


def test_time_already_spent_counts_towards_the_interval(fake_time: FakeTime) -> None:
    throttle = Throttle(60, clock=fake_time.clock, sleep=fake_time.sleep)
    throttle.wait()

    fake_time.elapsed += 0.25  # the request itself took a quarter of a second
    assert throttle.wait() == 0.75
    fake_time.elapsed += 5.0  # a long pause: no debt is carried over
    assert throttle.wait() == 0.0
    assert fake_time.sleeps == [0.75]


def test_push_back_delays_the_next_request(fake_time: FakeTime) -> None:
    throttle = Throttle(60, clock=fake_time.clock, sleep=fake_time.sleep)
    throttle.wait()

    throttle.push_back(30.0)
    assert throttle.wait() == 30.0
    throttle.push_back(0.5)  # shorter than the interval: the interval still applies
    assert throttle.wait() == 1.0
    assert fake_time.sleeps == [30.0, 1.0]


def test_a_refunded_slot_is_free_again(fake_time: FakeTime) -> None:
    throttle = Throttle(10, clock=fake_time.clock, sleep=fake_time.sleep)  # 6 s apart
    throttle.wait()

    throttle.refund()  # that request never reached the server
    fake_time.elapsed += 1.0
    assert throttle.wait() == 0.0
    assert throttle.wait() == 6.0  # a request that went out keeps its slot
