"""Start-up visibility: each stage logged with its duration, and a watchdog that names a stage
running longer than a threshold (a run "stuck at 0%" then says where: verl #597)."""
from __future__ import annotations

import contextlib
import logging
import threading
import time

logger = logging.getLogger("verl_ext.launch.stages")


class StageLog:
    def __init__(self, watchdog_s: float = 120.0, rank: int = 0, emit=None):
        self.watchdog_s = watchdog_s
        self.rank = rank
        self.records: list[tuple[str, float]] = []
        self._emit = emit or (lambda msg: logger.warning(msg))
        self._current: tuple[str, float] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned: set[str] = set()

    def say(self, msg: str) -> None:
        """One line in the stage log (rank 0 only)."""
        if self.rank == 0:
            self._emit(msg)

    def start_watchdog(self) -> None:
        if self._thread is None and self.watchdog_s > 0:
            self._thread = threading.Thread(target=self._watch, name="verl-ext-watchdog", daemon=True)
            self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(min(5.0, self.watchdog_s / 4)):
            cur = self._current
            if cur is None:
                continue
            name, t0 = cur
            elapsed = time.monotonic() - t0
            if elapsed > self.watchdog_s and name not in self._warned:
                self._warned.add(name)
                # every rank reports: a hang is often one rank waiting on another
                self._emit(f"[verl-ext] watchdog: rank {self.rank} still in stage '{name}' after {elapsed:.0f}s")

    @contextlib.contextmanager
    def stage(self, name: str):
        t0 = time.monotonic()
        self._current = (name, t0)
        self.say(f"[verl-ext] stage {name} ...")
        try:
            yield
        finally:
            dt = time.monotonic() - t0
            self.records.append((name, dt))
            self._current = None
            self.say(f"[verl-ext] stage {name} done in {dt:.1f}s")

    def close(self) -> None:
        self._stop.set()
