"""SIGINT and SIGTERM as an exception, the same in every process: stop now, record why, exit non-zero.

Python turns only SIGINT into an exception (KeyboardInterrupt); SIGTERM, what `kill`, DVC, SLURM and
container runtimes send, would end the process with no cleanup, and Lightning's own SIGTERM handler
exits with status 0 and, under DDP, broadcasts from inside the handler (a deadlock when the ranks are
in different collectives). Here both signals raise `Interrupted` in the main thread, and a watchdog
thread ends a process that is still stuck in native code `grace_s` seconds later (or at a second signal).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_seen: list[int] = []  # every SIGINT/SIGTERM this process received inside handled(), by the watchdog


class _Delivery:
    """What the main thread's handler has done: signals are process-wide, so this state is too."""

    raised = False  # an Interrupted is on its way: a second signal ends the process at once
    deferring = 0  # inside deferred(): hold the signal back
    pending: int | None = None
    forwarders: list[Callable[[int], None]] = []  # told first (e.g. to pass the signal to child processes)


_delivery = _Delivery()


def signalled(signum: int | None = None) -> bool:
    """Whether this process got SIGINT/SIGTERM (or `signum`), even if its main thread has not noticed."""
    return bool(_seen) if signum is None else signum in _seen


class Interrupted(BaseException):
    """The process was asked to stop (BaseException, like KeyboardInterrupt: nothing swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
        self.detail = ""  # what became of the work, added by whoever cleaned up

    def __str__(self) -> str:
        return f"interrupted by {signal.Signals(self.signum).name}" + (
            f"; {self.detail}" if self.detail else ""
        )

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM


def forward_to(forwarder: Callable[[int], None]) -> Callable[[], None]:
    """Have `forwarder(signum)` called on SIGINT/SIGTERM before Interrupted is raised; returns the undo."""
    _delivery.forwarders.append(forwarder)
    return lambda: _delivery.forwarders.remove(forwarder)


def raise_interrupted(signum: int, frame: object) -> None:
    for forwarder in list(_delivery.forwarders):
        forwarder(signum)
    if _delivery.raised:
        _hard_exit(signum, "second signal")
    if _delivery.deferring:
        _delivery.pending = signum
        return
    _delivery.raised = True
    raise Interrupted(signum)


def install(handler: Callable[[int, object], None] = raise_interrupted) -> None:
    for signum in SIGNALS:
        signal.signal(signum, handler)


@contextlib.contextmanager
def handled(grace_s: float = 10.0) -> Iterator[None]:
    """Within the block, SIGINT/SIGTERM raise Interrupted; a process still alive `grace_s` after the
    first signal (blocked in a collective or I/O, where no Python handler can run) is ended."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals are only delivered to the main thread: nothing to install
        return
    previous = {signum: signal.getsignal(signum) for signum in SIGNALS}
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    previous_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    stop = threading.Event()
    watchdog = threading.Thread(target=_watchdog, args=(read_fd, grace_s, stop), name="interrupts")
    watchdog.daemon = True
    watchdog.start()
    install()
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(previous_fd)
        stop.set()
        os.close(write_fd)  # wakes the watchdog, which closes read_fd
        watchdog.join(timeout=1.0)
        _seen.clear()
        _delivery.raised, _delivery.pending = False, None


def _watchdog(read_fd: int, grace_s: float, stop: threading.Event) -> None:
    """Sees every signal byte the C-level handler writes, even while the main thread is stuck."""
    received: list[int] = []
    timer: threading.Timer | None = None
    try:
        while True:
            data = os.read(read_fd, 64)
            if not data or stop.is_set():
                return
            received += [b for b in data if b in SIGNALS]
            _seen[:] = received
            if len(received) >= 2:
                _hard_exit(received[-1], "second signal")
            if received and timer is None:
                timer = threading.Timer(
                    grace_s, _hard_exit, (received[0], f"still running {grace_s:g} s after")
                )
                timer.daemon = True
                timer.start()
    finally:
        if timer is not None and stop.is_set():
            timer.cancel()
        os.close(read_fd)


_exiting = threading.Lock()


def _hard_exit(signum: int, why: str) -> None:
    """Once per process: the main thread's handler and the watchdog may both see a second signal,
    and a second caller would print the line again while the first exits."""
    if not _exiting.acquire(blocking=False):
        threading.Event().wait()  # the other caller is ending the process
    name = signal.Signals(signum).name
    print(f"error: {why} {name}: exiting now, without cleanup", file=sys.stderr, flush=True)
    os._exit(128 + signum)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """A critical section: a SIGINT/SIGTERM that arrives inside it raises when it ends.

    (Not a signal mask: the kernel would hand the signal to one of the other threads, and Python
    runs the handler in the main thread anyway; handlers always run in the main thread, so a flag
    works.)
    """
    _delivery.deferring += 1
    try:
        yield
    finally:
        _delivery.deferring -= 1
        if not _delivery.deferring and _delivery.pending is not None:
            signum, _delivery.pending = _delivery.pending, None
            _delivery.raised = True
            raise Interrupted(signum)
