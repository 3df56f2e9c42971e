"""Every DDP rank ends within seconds when one of them dies or is stopped, and the run says why."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import lightning as L
import torch.distributed as dist

from digitpipe import interrupts
from digitpipe.distributed.launch import prepare_launch, release_launch
from digitpipe.environment import LAUNCHED_BY
from digitpipe.errors import RankFailed
from digitpipe.lightning_compat import take_child_processes
from digitpipe.tracking.run import TrackedRun


@contextlib.contextmanager
def supervised(trainer: L.Trainer, run: TrackedRun | None, checkpoint: Path | None) -> Iterator[None]:
    """Around the fit (and test) of a training in several processes: the ranks re-run only this job
    and resume `checkpoint` too, they are watched, and a failure that a lost rank caused says so
    (RankFailed); after it, the process group is freed for the next job of a sweep."""
    launcher = prepare_launch(checkpoint)
    watch = RankWatch(trainer, run)
    try:
        yield
    except Exception as err:  # a collective fails when another rank has died
        if reason := watch.explain(err):
            raise RankFailed(reason) from err
        raise
    finally:
        watch.stop()
    release_launch(launcher)


class RankWatch:
    """Ends a DDP training within a second or two when one of its processes dies, with one line.

    Lightning's launcher looks at the ranks it started every 5 s and then SIGKILLs every process,
    its own included, so the run could never be marked; a rank whose peer is gone may instead wait
    in a collective (or the rendezvous) for gloo's 30-minute timeout. Here the launching process
    (global rank 0) takes its ranks over from Lightning's launcher as soon as they exist and checks
    them every `period_s`. If one died, its main thread, whose next collective fails, reports
    `failure()` in one line; if that thread is stuck (e.g. in the rendezvous), this one marks the run
    FAILED and exits. If this process got a SIGTERM, it passes it on, even while its
    main thread is stuck in native code. A rank it started exits when it is gone.
    """

    def __init__(self, trainer: L.Trainer, run: TrackedRun | None, period_s: float = 0.5) -> None:
        self.trainer, self.run, self.period_s = trainer, run, period_s
        self.procs: list[subprocess.Popen] = []  # the ranks this process started, once taken over
        self.done, self.forwarded = threading.Event(), threading.Lock()
        self.stop_forwarding: Callable[[], None] = lambda: None
        launched_by = os.environ.get(LAUNCHED_BY)
        if hasattr(trainer.strategy.launcher, "procs") and launched_by == str(os.getpid()):
            target, args = self._watch_ranks, ()
            self.stop_forwarding = interrupts.forward_to(self.forward)
        elif launched_by and launched_by != str(os.getpid()):
            target, args = self._watch_launcher, (int(launched_by),)
        else:
            return  # one process, or ranks started by torchrun/SLURM, which watch them
        threading.Thread(target=target, args=args, daemon=True, name="rank-watch").start()

    def stop(self) -> None:
        self.done.set()
        self.stop_forwarding()

    def forward(self, signum: int) -> None:
        """Pass a SIGTERM on to the ranks, once (a terminal's Ctrl-C reaches each of them by itself)."""
        if signum == signal.SIGTERM and self.forwarded.acquire(blocking=False):
            self._signal(self._ranks())

    def _ranks(self) -> list[subprocess.Popen]:
        """The ranks this process started, taken over from Lightning's launcher once they exist."""
        self.procs += [p for p in take_child_processes(self.trainer) if p not in self.procs]
        return list(self.procs)

    def _watch_ranks(self) -> None:
        while not self.done.wait(self.period_s):
            procs = self._ranks()
            if not procs:
                continue  # not launched yet
            if interrupts.signalled(signal.SIGTERM):
                self.forward(signal.SIGTERM)  # the main thread may be stuck in native code
            if all(proc.poll() == 0 for proc in procs):
                return
            # the main thread, whose collective failed, reports a dead rank (and one that got a signal
            # itself reports that); if it has not within 3 s, it is stuck (e.g. in the rendezvous)
            if self.failure() and not interrupts.signalled() and not self.done.wait(3.0):
                self._fail(procs)

    def failure(self, wait_s: float = 0.0) -> str | None:
        """Why a rank this process launched stopped, if one did (waiting up to `wait_s` to see it)."""
        procs = self._ranks()
        deadline = time.monotonic() + wait_s
        while procs:
            failed = [(rank, proc) for rank, proc in enumerate(procs, 1) if proc.poll()]
            if failed:
                rank, proc = failed[0]
                return f"DDP rank {rank} (pid {proc.pid}) stopped: {exit_reason(proc.returncode)}"
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.1)
        return None

    def _fail(self, procs: list[subprocess.Popen]) -> None:
        message = self.failure() or "a DDP rank stopped"
        if self.run is not None:
            self.run.fail(message)
            message += f"; run {self.run.run_id} marked FAILED"
        print(f"error: {message}", file=sys.stderr, flush=True)
        self._signal(procs)
        os._exit(1)

    def explain(self, err: BaseException) -> str | None:
        """Why the training failed with `err`, if a rank is gone: the rank this process launched that
        stopped (given a few seconds to be seen stopped: a rank that got a signal may take a moment
        under load), else, for a collective that failed because its peer closed, that peer's loss."""
        lost = lost_peer(err)
        reason = self.failure(wait_s=10.0 if lost else 2.0)
        if reason is None and lost:
            reason = f"DDP rank {self.trainer.global_rank} lost the other ranks ({lost})"
        return reason

    @staticmethod
    def _signal(procs: list[subprocess.Popen]) -> None:
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(OSError):
                    proc.send_signal(signal.SIGTERM)

    def _watch_launcher(self, parent: int) -> None:
        while os.getppid() == parent:
            if self.done.wait(self.period_s):
                return
        print(f"error: DDP rank 0 (pid {parent}) is gone; this rank stops too", file=sys.stderr, flush=True)
        os._exit(1)


def lost_peer(err: BaseException) -> str | None:
    """The first line of a collective's error that says another rank is gone, else None."""
    if not isinstance(err, RuntimeError):
        return None
    text = str(err)
    gone = ("Connection closed by peer", "Connection reset")
    if isinstance(err, dist.DistError) or any(words in text for words in gone):
        return text.strip().splitlines()[0][-120:] if text.strip() else type(err).__name__
    return None


def exit_reason(code: int) -> str:
    """An exit status in words: 'exit code 1', 'signal SIGTERM'."""
    signum = -code if code < 0 else code - 128 if code > 128 else None
    if signum is not None and signum in signal.Signals._value2member_map_:
        return f"signal {signal.Signals(signum).name}"
    return f"exit code {code}"
