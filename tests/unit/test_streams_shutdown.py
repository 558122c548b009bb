import subprocess
import sys
import time

from driftline.streams.app.shutdown import BoundedWorker, exit_after

HANGS = """
import time
from driftline.streams.app.shutdown import exit_after
exit_after(0.3)
time.sleep(30)  # a stop stuck on a dead broker
"""


def test_a_stop_stuck_past_the_deadline_exits_non_zero_at_the_deadline():
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", HANGS], capture_output=True, text=True, timeout=20)
    assert done.returncode == 1
    assert time.monotonic() - started < 15
    assert "did not stop within" in done.stderr


def test_the_deadline_never_keeps_a_process_alive_and_ends_before_up_kills():
    timer = exit_after(3600)
    try:
        assert timer.daemon and timer.is_alive()
    finally:
        timer.cancel()
    assert BoundedWorker.shutdown_deadline_s <= 30  # below `driftline up`'s 30 s grace
