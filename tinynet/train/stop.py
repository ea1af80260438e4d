"""Stopping a run cleanly: Ctrl-C at a batch boundary, and the non-finite-loss stop."""
import signal

__all__ = ["Interrupted", "Diverged", "StopRequest"]


class Interrupted(Exception):
    """Ctrl-C (or a test's planned stop) seen at a batch boundary."""


class Diverged(Exception):
    """The training loss or the weights stopped being finite."""


class StopRequest:
    """Ctrl-C raises a flag; the loop looks at it after each batch, so what is saved is consistent.

    A second Ctrl-C stops at once (Python's default KeyboardInterrupt).  ``stop_at`` --
    ``('train' | 'val', epoch, batch)``, both from 1 -- raises the same signal at an exact batch,
    so tests interrupt where they mean to.  Use it as a context manager around ``fit``.
    """

    def __init__(self, stop_at=None):
        self.requested, self.stop_at, self._previous = False, stop_at, None

    def __enter__(self):
        self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc):
        signal.signal(signal.SIGINT, self._previous)

    def _handle(self, signum, frame):
        self.requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def check(self, stage, epoch, batch):
        """After batch ``batch`` of ``stage`` ('train' or 'val') of ``epoch`` (both from 1)."""
        if self.stop_at == (stage, epoch, batch):
            signal.raise_signal(signal.SIGINT)
        if self.requested:
            raise Interrupted

    def check_at_boundary(self):
        if self.requested:
            raise Interrupted


class NeverStop:
    """The stop request of a run without a signal handler (a notebook, a thread): never set."""

    requested = False

    def check(self, stage, epoch, batch):
        pass

    def check_at_boundary(self):
        pass
