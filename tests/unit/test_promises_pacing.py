"""The pacer's rate promise (docs/deploying.md, Fleet-wide pacing): in any one-second window at most ⌊rate⌋ + 1 calls
are let go, even when threads wake late from their pacing sleep (a busy machine deschedules them).

The threads run for real, but on a simulated clock: a sleeping thread blocks until the test moves time to
its wake-up moment, and time moves only when every thread is asleep or finished. So the moments calls are
let go are clock readings the test chose, not measurements, and the outcome is the same on any machine."""

from __future__ import annotations

import threading

import pytest

from shared import clock as shared_clock
from shared.client import Call, Pacer


class SimClock:
    """Time stands still until the driver moves it; sleep() blocks until then. `late` makes a chosen
    thread's n-th sleep end this much after the moment it asked for (a thread descheduled while asleep)."""

    def __init__(self, late: dict[tuple[str, int], float]) -> None:
        self.t = 1000.0
        self.late = late
        self.cond = threading.Condition()
        self.sleeping: dict[int, float] = {}  # thread ident -> wake time
        self.sleeps: dict[str, int] = {}
        self.finished = 0

    def now(self) -> float:
        return self.monotonic()

    def monotonic(self) -> float:
        with self.cond:
            return self.t

    def sleep(self, seconds: float) -> None:
        name = threading.current_thread().name
        me = threading.get_ident()
        with self.cond:
            count = self.sleeps.get(name, 0)
            self.sleeps[name] = count + 1
            self.sleeping[me] = self.t + max(seconds, 0.0) + self.late.get((name, count), 0.0)
            self.cond.notify_all()
            while me in self.sleeping:
                if not self.cond.wait(timeout=10):
                    raise AssertionError("the driver never woke this thread")

    def done(self) -> None:
        with self.cond:
            self.finished += 1
            self.cond.notify_all()

    def drive(self, threads: int) -> None:
        """Move time to the next wake-up whenever every thread is asleep or done, until all are done."""
        with self.cond:
            while True:
                if not self.cond.wait_for(lambda: len(self.sleeping) + self.finished == threads, timeout=10):
                    raise AssertionError("threads neither slept nor finished")
                if self.finished == threads:
                    return
                self.t = min(self.sleeping.values())
                for ident in [i for i, wake in self.sleeping.items() if wake <= self.t]:
                    del self.sleeping[ident]
                self.cond.notify_all()


def run(rate: float, threads: int, calls_each: int, late: dict[tuple[str, int], float]) -> list[float]:
    """Let `threads` threads make `calls_each` paced calls each; the clock readings at which calls went."""
    sim = SimClock(late)
    previous = shared_clock.use(sim)
    pacer = Pacer(rate)
    gone: list[float] = []
    lock = threading.Lock()

    def work() -> None:
        try:
            for _ in range(calls_each):
                pacer.acquire(Call(deadline=sim.t + 3600))
                with lock:
                    gone.append(sim.monotonic())
        finally:
            sim.done()

    workers = [threading.Thread(target=work, name=f"t{i}") for i in range(threads)]
    try:
        for worker in workers:
            worker.start()
        sim.drive(threads)
    finally:
        for worker in workers:
            worker.join(timeout=10)
        shared_clock.use(previous)
    assert len(gone) == threads * calls_each  # every call went, none was lost to the rule
    return sorted(gone)


def worst_second(times: list[float]) -> int:
    """The most calls in any window [t, t + 1 s)."""
    return max(sum(1 for u in times if t <= u < t + 1.0) for t in times)


@pytest.mark.parametrize("rate", [20, 16.666, 3.333, 1.111, 0.333])
def test_on_time_threads_go_exactly_on_their_slots(rate: float) -> None:
    times = run(rate=rate, threads=5, calls_each=6, late={})
    assert worst_second(times) <= int(rate) + 1
    # evenly spaced, one call every 1/rate: the window never holds back a call that is on its slot
    assert times == pytest.approx([times[0] + k / rate for k in range(30)], abs=1e-6)


@pytest.mark.parametrize("late_s", [0.12, 0.5, 1.3])
def test_threads_that_wake_late_never_make_a_second_hold_more_than_rate_plus_one(late_s: float) -> None:
    # three threads are descheduled during the same early pacing sleep and wake late together, while the
    # others go on taking their slots: going at once, the late ones would join a second already full
    late = {("t1", 1): late_s, ("t2", 1): late_s, ("t3", 1): late_s}
    times = run(rate=20, threads=6, calls_each=10, late=late)
    assert worst_second(times) <= 21
    # and on average no faster than the rate: 60 calls take at least 59 intervals
    assert times[-1] - times[0] >= 59 * 0.05 - 1e-9


@pytest.mark.parametrize("rate", [1.111, 3.333, 16.666])
def test_fractional_rates_hold_floor_plus_one_even_with_late_threads(rate: float) -> None:
    late = {(f"t{i}", 2): 0.7 / rate for i in range(1, 4)}
    times = run(rate=rate, threads=4, calls_each=8, late=late)
    assert worst_second(times) <= int(rate) + 1


@pytest.mark.parametrize("rate", [20, 16.666, 3.333])
def test_requests_that_leave_within_the_slack_of_being_let_go_arrive_within_the_promise(rate: float) -> None:
    """What upstream counts is arrivals. A request leaves a little after acquire() returns (building it,
    the socket write; a thread can be descheduled there too): up to Pacer.slack_s later, arrivals keep
    the same bound. Here every other call leaves the full slack late, and three threads also wake late."""
    slack = Pacer(rate).slack_s
    assert slack > 0
    late = {(f"t{i}", 1): 0.6 / rate + i * 0.013 for i in range(1, 4)}
    gone = run(rate=rate, threads=6, calls_each=10, late=late)
    arrivals = [t + (slack if n % 2 else 0.0) for n, t in enumerate(gone)]
    assert worst_second(arrivals) <= int(rate) + 1
