"""Ctrl-C and SIGTERM, acted on where stopping is safe: between two optimizer steps, or between
two trials. TensorFlow must not be interrupted mid-call, so the first signal is only noted; a
second one stops at once."""

from __future__ import annotations

import signal

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM, raised at a safe point; Optuna then fails the running trial as it does
    for Ctrl-C."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class SafeStop:
    """While entered (`with SafeStop() as stop:`), Ctrl-C and SIGTERM are noted, and `stop.check()`
    raises Interrupted at the next safe point; the handlers found on entry come back on exit.
    Never entered, it never stops anything."""

    def __init__(self):
        self.noted: list[int] = []
        self._before: dict[int, object] = {}

    def _note(self, signum: int, frame=None) -> None:
        if self.noted:
            raise Interrupted(signum)
        self.noted.append(signum)

    def check(self) -> None:
        if self.noted:
            raise Interrupted(self.noted[0])

    def __enter__(self) -> SafeStop:
        self.noted.clear()
        for signum in SIGNALS:
            self._before[signum] = signal.signal(signum, self._note)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._before.items():
            signal.signal(signum, handler)
        self._before.clear()
