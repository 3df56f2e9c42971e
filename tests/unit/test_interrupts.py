"""SIGINT/SIGTERM as Interrupted, critical sections, and the watchdog that ends a stuck process."""

import os
import signal
import subprocess
import sys
import time

import pytest

from digitpipe import interrupts
from digitpipe.interrupts import Interrupted


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_inside_handled_raises_interrupted_with_the_shells_exit_code(signum, code):
    before = signal.getsignal(signum)
    with pytest.raises(Interrupted) as caught, interrupts.handled():
        os.kill(os.getpid(), signum)
        time.sleep(5)  # the handler raises here, at once
    assert caught.value.exit_code == code
    assert str(caught.value) == f"interrupted by {signal.Signals(signum).name}"
    assert signal.getsignal(signum) is before  # restored


def test_a_signal_in_a_deferred_section_arrives_when_the_section_ends():
    done = []
    with pytest.raises(Interrupted), interrupts.handled():
        with interrupts.deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)
            done.append("the whole section ran")
        done.append("never: the signal is delivered on leaving the section")
    assert done == ["the whole section ran"]


STUCK = """
import sys, time
from digitpipe import interrupts
with interrupts.handled(grace_s={grace}):
    try:
        print("ready", flush=True)
        time.sleep(60)
    except interrupts.Interrupted:
        print("cleaning up", flush=True)
        time.sleep(60)  # a cleanup that hangs (or native code that never returns)
"""


def run_stuck(grace: float, signals: list[int]) -> tuple[subprocess.CompletedProcess, float]:
    process = subprocess.Popen([sys.executable, "-c", STUCK.format(grace=grace)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert process.stdout.readline().strip() == "ready"
    started = time.monotonic()
    seen = ""
    for signum in signals:
        process.send_signal(signum)
        if signum != signals[-1]:  # the next signal is a second one only once this one was handled
            seen += process.stdout.readline()
    out, err = process.communicate(timeout=30)
    result = subprocess.CompletedProcess(process.args, process.returncode, seen + out, err)
    return result, time.monotonic() - started


def test_a_process_still_stuck_after_the_grace_period_is_ended():
    result, seconds = run_stuck(grace=1.0, signals=[signal.SIGTERM])
    assert result.returncode == 143
    assert 0.9 < seconds < 10
    assert "cleaning up" in result.stdout
    assert result.stderr.strip() == "error: still running 1 s after SIGTERM: exiting now, without cleanup"


def test_a_second_signal_ends_the_process_at_once():
    result, seconds = run_stuck(grace=30.0, signals=[signal.SIGTERM, signal.SIGINT])
    assert result.returncode == 130
    assert seconds < 10
    assert result.stderr.strip() == "error: second signal SIGINT: exiting now, without cleanup"
