"""Loaded by every Python process of CI's run under faketime (PYTHONPATH), never otherwise.

libfaketime 0.9.10 (Debian 12) breaks Python's clocks one way or the other: faking the monotonic
clock makes every timed wait that times out (Lock.acquire(timeout), Event.wait, Thread.join)
wait for the 214 days of the shift, since Python waits with sem_clockwait, which libfaketime
does not wrap; leaving it real (FAKETIME_DONT_FAKE_MONOTONIC=1, as .ci/run does) makes
clock_nanosleep, and so time.sleep, fail with EINVAL. Only the wall clock needs shifting, so
time.sleep waits with select() here instead.
"""

import os

if "faketime" in os.environ.get("LD_PRELOAD", ""):
    import select
    import time

    def _sleep(seconds: float) -> None:
        if seconds < 0:
            raise ValueError("sleep length must be non-negative")
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            select.select([], [], [], left)

    time.sleep = _sleep
