"""BoundedPool: per-task hard bound (kill + replace), crashes, start-up failures, from threads."""
from __future__ import annotations

import os
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from verl_ext_eval.math.pool import BoundedPool, PoolError

TASKS = textwrap.dedent(
    """
    import os, signal, time

    def stuck(seconds):
        # blocks SIGALRM like a C extension that never returns to the interpreter
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGALRM])
        time.sleep(seconds)
        return "slept"

    def slow_python(seconds):
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass
        return "spun"

    def square(x):
        return x * x

    def fail(x):
        raise ValueError(f"bad {x}")

    def crash(x):
        if x == 1:
            os._exit(3)
        return x

    def pid(_):
        return os.getpid()
    """
)


@pytest.fixture()
def tasks_module(tmp_path, monkeypatch):
    (tmp_path / "pool_test_tasks.py").write_text(TASKS)
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    return "pool_test_tasks"


def test_results_in_order_and_errors_reported(tasks_module):
    with BoundedPool(f"{tasks_module}:square", workers=2, timeout_s=5, chunk_size=7) as pool:
        results = pool.map([(i,) for i in range(500)])
    assert [r.value for r in results] == [i * i for i in range(500)]
    with BoundedPool(f"{tasks_module}:fail", workers=1, timeout_s=5) as pool:
        (r,) = pool.map([(3,)])
    assert r.value is None and r.error == "ValueError: bad 3" and not r.timed_out


def test_stuck_task_is_killed_at_the_bound_and_the_pool_goes_on(tasks_module):
    bound = 1.0
    with BoundedPool(f"{tasks_module}:stuck", workers=2, timeout_s=bound, chunk_size=4) as pool:
        start = time.perf_counter()
        results = pool.map([(0.01,), (60,), (0.01,), (0.01,), (60,), (0.01,), (0.01,)])
        wall = time.perf_counter() - start
        assert pool.replaced == 2
    assert [r.timed_out for r in results] == [False, True, False, False, True, False, False]
    assert all(r.value == "slept" for r in results if not r.timed_out)
    assert all(bound <= r.seconds <= bound + 0.3 for r in results if r.timed_out)
    assert wall < 2 * bound + 5


def test_soft_alarm_ends_slow_python_and_retires_the_worker(tasks_module):
    """The in-worker alarm (80% of the bound) ends the task before the bound; that worker then
    serves nothing more (an alarm mid-SymPy can leave its caches half-updated)."""
    with BoundedPool(f"{tasks_module}:slow_python", workers=1, timeout_s=1.0, chunk_size=4) as pool:
        results = pool.map([(30,), (0.0,), (0.0,)])
        assert pool.replaced == 1
    assert results[0].timed_out and results[0].error == "timeout" and results[0].seconds < 1.0
    assert [r.value for r in results[1:]] == ["spun", "spun"]


def test_no_task_runs_in_a_worker_after_its_soft_timeout(tasks_module, tmp_path):
    (tmp_path / "pool_test_state.py").write_text(
        "import os, time\n"
        "def task(kind):\n"
        "    if kind == 'slow':\n"
        "        while True: pass\n"
        "    return os.getpid()\n")
    with BoundedPool("pool_test_state:task", workers=1, timeout_s=0.5, chunk_size=8) as pool:
        first = pool.map([("pid",)])[0].value
        results = pool.map([("slow",), ("pid",), ("slow",), ("pid",)])
        assert pool.replaced == 2
    assert results[0].timed_out and results[2].timed_out
    pids = [first, results[1].value, results[3].value]
    assert len(set(pids)) == 3  # a fresh worker after each timeout


def test_crashed_worker_is_replaced(tasks_module):
    with BoundedPool(f"{tasks_module}:crash", workers=1, timeout_s=5, chunk_size=3) as pool:
        results = pool.map([(0,), (1,), (2,), (3,)])
    assert [r.value for r in results] == [0, None, 2, 3]
    assert results[1].error == "worker died"


def test_workers_that_cannot_start_raise(tasks_module):
    with pytest.raises(PoolError, match="exited before it was ready"):
        BoundedPool(f"{tasks_module}:no_such_function", workers=1, timeout_s=5).map([(1,)])
    with pytest.raises(ValueError, match="module:function"):
        BoundedPool("no_colon", workers=1, timeout_s=5)


def test_pool_is_reused_and_close_stops_workers(tasks_module):
    pool = BoundedPool(f"{tasks_module}:pid", workers=2, timeout_s=5)
    first = {r.value for r in pool.map([(i,) for i in range(50)])}
    worker_pids = {w.proc.pid for w in pool._workers}
    second = {r.value for r in pool.map([(i,) for i in range(50)])}
    assert first <= worker_pids and second <= worker_pids and pool.replaced == 0
    procs = [w.proc for w in pool._workers]
    pool.close()
    assert all(p.poll() is not None for p in procs)


def test_runs_from_threads(tasks_module):
    def run(k):
        with BoundedPool(f"{tasks_module}:stuck", workers=1, timeout_s=1.0) as pool:
            return pool.map([(60,), (0.0,)])

    with ThreadPoolExecutor(max_workers=3) as ex:
        outcomes = list(ex.map(run, range(3)))
    for results in outcomes:
        assert results[0].timed_out and results[1].value == "slept"


def test_interrupted_map_leaves_no_stale_results(tasks_module):
    def boom(index, result):
        raise KeyboardInterrupt

    with BoundedPool(f"{tasks_module}:square", workers=2, timeout_s=5, chunk_size=8) as pool:
        with pytest.raises(KeyboardInterrupt):
            pool.map([(i,) for i in range(100)], on_result=boom)
        assert [r.value for r in pool.map([(i,) for i in range(30)])] == [i * i for i in range(30)]
