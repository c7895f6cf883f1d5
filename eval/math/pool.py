"""A process pool with a hard wall-time bound per task, usable from any thread or a Ray worker.

Why not ``concurrent.futures.ProcessPoolExecutor``: it cannot cancel a running task, so one SymPy
call stuck in ``10**(10**10)`` holds its worker forever. math-verify's own bound is
``signal.alarm``, which raises ``ValueError`` off the main thread (math-verify 0.9.0).

Here every worker runs tasks in its own main thread, so a soft ``setitimer`` alarm (at 80% of the
bound) ends most slow tasks cleanly; a task still running at the bound (stuck in C code) gets its
worker killed (SIGKILL). Either way the task is reported ``timed_out``, the rest of that worker's
chunk goes back to the queue and the worker is replaced: an alarm raised at an arbitrary point can
leave SymPy's caches half-updated, so a worker never serves another task after one. After the first
replacement a warm spare is kept, so later timeouts cost no start-up (SymPy import + warm-up).
Tasks travel in chunks (throughput) but results come back one by one, so the bound applies to each
task, measured from when the parent saw it start.

Kept over ``pebble.ProcessPool`` (5.2.3) for now: ``python -m bench.grading --compare-pools`` measured
them within ~10% of each other on a shared 2-core box (125 math-verify tasks, 2 timeouts: 10.7 s vs
10.0 s), and this pool needs no ``multiprocessing`` (a fresh interpreter per worker works from
threads, Ray workers and any ``__main__``), dies with its parent and caps worker memory.
"""
from __future__ import annotations

import importlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Callable, Sequence

logger = logging.getLogger(__name__)

SOFT_FRACTION = 0.8  # the in-worker alarm fires at this share of the bound
START_TIMEOUT_S = 120.0  # a worker not ready by then (stuck import) fails the pool


@dataclass(frozen=True)
class TaskResult:
    value: Any = None
    error: str | None = None  # "timeout", "worker died", or "<ExceptionType>: message"
    timed_out: bool = False
    seconds: float = 0.0


class PoolError(RuntimeError):
    """Workers cannot start (their import or set-up fails)."""


class _SoftTimeout(BaseException):
    """Raised by the worker's alarm; a BaseException so library ``except Exception`` blocks
    (math-verify has many) cannot swallow it."""


def _on_alarm(signum, frame):  # pragma: no cover - runs in the worker
    raise _SoftTimeout()


def _worker_loop(conn: Connection, func: Callable, soft_s: float) -> None:
    """Receive a chunk ``[(index, args), ...]``, send ``(index, ok, value, error, secs)`` per
    task; ``None`` or a closed socket ends the loop."""
    conn.send(("ready", os.getpid()))
    while True:
        try:
            chunk = conn.recv()
        except (EOFError, OSError):
            return
        if chunk is None:
            return
        for index, args in chunk:
            start = time.perf_counter()
            try:
                try:
                    signal.setitimer(signal.ITIMER_REAL, soft_s, 0.05)  # repeats until cleared
                    out = (index, True, func(*args), None)
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
            except _SoftTimeout:  # report, then exit: the parent replaces this worker
                conn.send((index, False, None, "timeout", time.perf_counter() - start))
                return
            except MemoryError:
                out = (index, False, None, "MemoryError")
            except Exception as e:  # noqa: BLE001 - reported per task, the worker goes on
                out = (index, False, None, f"{type(e).__name__}: {e}"[:300])
            conn.send(out + (time.perf_counter() - start,))


def _die_with_parent() -> None:
    """Linux: SIGKILL this worker when the parent dies (a task stuck in C never reads EOF)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort off Linux
        pass


def _import(target: str) -> Callable:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def _worker_entry() -> None:  # pragma: no cover - runs in the worker process
    """``python -c ... <fd> <module:function> <soft_s> <memory_mb> [<module:initializer>]`` (see
    ``BoundedPool._spawn``)."""
    fd, target, soft_s, memory_mb = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    initializer = sys.argv[5] if len(sys.argv) > 5 else ""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    signal.signal(signal.SIGALRM, _on_alarm)
    os.dup2(2, 1)  # stray prints from libraries go to stderr
    func = _import(target)
    if initializer:
        _import(initializer)()  # before "ready": its time is not charged to any task
    if memory_mb > 0:
        import resource

        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    _worker_loop(Connection(int(fd)), func, soft_s)


@dataclass
class _Worker:
    proc: Any
    conn: Connection
    ready: bool = False
    pending: deque = field(default_factory=deque)
    started: float = 0.0  # when the parent saw the current task (pending[0]) start
    spawned: float = field(default_factory=time.perf_counter)


_REPO_ROOT = str(Path(__file__).resolve().parents[2])
_BOOT = ("import sys; sys.path.insert(0, {root!r}); "
         "from verl_ext_eval.math.pool import _worker_entry; _worker_entry()")


class BoundedPool:
    """``func`` over many tasks in ``workers`` processes, each task bounded by ``timeout_s``
    seconds of wall time. ``func`` is ``"module:function"``, imported by each worker before it
    reports ready (a fresh ``python`` process, not ``multiprocessing``: no re-import of the
    caller's ``__main__``, no fork of a threaded parent, works from daemonic/Ray processes)."""

    def __init__(self, func: str, workers: int, timeout_s: float, *, chunk_size: int = 16,
                 memory_mb: int | None = None, initializer: str | None = None):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.func = func
        self.n_workers = workers
        self.timeout_s = float(timeout_s)
        self.chunk_size = max(1, chunk_size)
        self.memory_mb = memory_mb
        for target in (func, initializer or "m:f"):
            if ":" not in target:
                raise ValueError(f"func and initializer must be 'module:function', got {target!r}")
        self.initializer = initializer
        self._workers: list[_Worker] = []
        self._spare: _Worker | None = None  # started after the first replacement
        self.replaced = 0  # workers killed and replaced so far (timeouts, crashes)

    # -- lifecycle -------------------------------------------------------------------------
    def _spawn(self) -> _Worker:
        parent, child = socket.socketpair()
        soft = self.timeout_s * SOFT_FRACTION
        cmd = [sys.executable, "-c", _BOOT.format(root=_REPO_ROOT), str(child.fileno()), self.func,
               repr(soft), str(self.memory_mb or 0), self.initializer or ""]
        try:
            proc = subprocess.Popen(cmd, pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL,
                                    close_fds=True)
        finally:
            child.close()
        return _Worker(proc, Connection(parent.detach()))

    def _ensure_workers(self) -> None:
        while len(self._workers) < self.n_workers:
            self._workers.append(self._spawn())

    def _kill(self, w: _Worker) -> None:
        try:
            w.proc.kill()
            w.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):  # already gone / unkillable
            pass
        w.conn.close()
        self._workers.remove(w)

    def _replace(self, w: _Worker) -> None:
        """Kill ``w``; the spare (if any) takes its place and a new spare starts."""
        self._kill(w)
        self.replaced += 1
        self._workers.append(self._spare or self._spawn())
        self._spare = self._spawn()

    def close(self) -> None:
        """Stop every worker (politely, then by force)."""
        if self._spare is not None:
            self._workers.append(self._spare)
            self._spare = None
        for w in self._workers:
            try:
                w.conn.send(None)
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + 2
        for w in list(self._workers):
            try:
                w.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait(timeout=5)
            w.conn.close()
        self._workers.clear()

    def __enter__(self) -> "BoundedPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- work ------------------------------------------------------------------------------
    def map(self, tasks: Sequence[tuple], on_result: Callable[[int, TaskResult], None] | None = None
            ) -> list[TaskResult]:
        """Run ``func(*task)`` for every task; results in task order. ``on_result(index, result)``
        is called as each finishes (progress bars)."""
        results: list[TaskResult | None] = [None] * len(tasks)
        queue: deque[int] = deque(range(len(tasks)))
        remaining = len(tasks)
        self._ensure_workers()

        def finish(index: int, result: TaskResult) -> None:
            nonlocal remaining
            results[index] = result
            remaining -= 1
            if on_result is not None:
                on_result(index, result)

        try:
            self._run(tasks, queue, finish, lambda: remaining)
        except BaseException:
            # interrupted (Ctrl-C, a failing callback): busy workers hold stale tasks; drop them
            for w in [w for w in self._workers if w.pending]:
                self._kill(w)
            raise
        return results  # type: ignore[return-value]

    def _run(self, tasks: Sequence[tuple], queue: deque, finish: Callable, remaining: Callable[[], int]) -> None:
        while remaining():
            now = time.perf_counter()
            for w in self._workers:
                if w.ready and not w.pending and queue:
                    share = -(-len(queue) // self.n_workers)  # ceil: keep every worker busy
                    n = min(self.chunk_size, share)
                    chunk = [queue.popleft() for _ in range(min(n, len(queue)))]
                    w.conn.send([(i, tasks[i]) for i in chunk])
                    w.pending.extend(chunk)
                    w.started = now
            busy = [w for w in self._workers if w.pending]
            wait_s = 0.5
            if busy:
                wait_s = max(0.0, min(w.started + self.timeout_s for w in busy) - now)
            spare = [self._spare] if self._spare is not None else []
            ready_conns = wait([w.conn for w in self._workers + spare], timeout=min(wait_s, 0.5) + 0.001)
            by_conn = {id(w.conn): w for w in self._workers + spare}
            dead: list[_Worker] = []
            retired: list[_Worker] = []
            for conn in ready_conns:
                w = by_conn[id(conn)]
                try:
                    while conn.poll():
                        msg = conn.recv()
                        if msg[0] == "ready":
                            w.ready = True
                            continue
                        index, ok, value, err, secs = msg
                        if not w.pending or w.pending[0] != index:
                            continue  # stale (cannot happen with in-order workers)
                        w.pending.popleft()
                        w.started = time.perf_counter()
                        finish(index, TaskResult(value if ok else None, None if ok else err,
                                                 err == "timeout", secs))
                        if err == "timeout":  # the worker exits after a soft timeout
                            retired.append(w)
                            break
                except (EOFError, OSError):
                    dead.append(w)
            if self._spare is not None and self._spare in dead:
                logger.warning("the spare worker for %s exited (code %s)", self.func, self._spare.proc.poll())
                self._spare.conn.close()
                self._spare = None
            now = time.perf_counter()
            for w in list(self._workers):
                if w in retired:
                    queue.extendleft(reversed(w.pending))
                    w.pending.clear()
                    self._replace(w)
                    continue
                crashed = w in dead
                if crashed and not w.ready:
                    self.close()
                    raise PoolError(f"a worker process for {self.func} exited before it was ready (exit code "
                                    f"{w.proc.poll()}); its stderr above says why")
                if not w.ready and now - w.spawned > START_TIMEOUT_S:
                    self.close()
                    raise PoolError(f"a worker process for {self.func} was not ready after {START_TIMEOUT_S:.0f} s")
                overdue = bool(w.pending) and now - w.started > self.timeout_s
                if not (crashed or overdue):
                    continue
                if w.pending:
                    index = w.pending.popleft()
                    err = "timeout" if overdue and not crashed else "worker died"
                    finish(index, TaskResult(None, err, err == "timeout", now - w.started))
                    queue.extendleft(reversed(w.pending))
                    logger.debug("task %d: %s; replacing worker pid %s", index, err, w.proc.pid)
                self._replace(w)
