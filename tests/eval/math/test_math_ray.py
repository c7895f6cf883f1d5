"""The per-sample bound holds inside a Ray worker (generation eval runs there under verl):
math-verify's own ``signal.alarm`` cannot, and ``multiprocessing`` pools are fragile in it."""
from __future__ import annotations

import time

import pytest

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.serial  # starts a local Ray instance: not beside the Ray clusters of other tests


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def test_pathological_input_bounded_inside_a_ray_worker(local_ray):
    bound = 1.5

    @ray.remote
    def grade_in_worker():
        from verl_ext_eval.math.grading import grade_many

        start = time.perf_counter()
        results = grade_many([(r"\boxed{(x+1)^{10^{6}}}", "5"), (r"\boxed{x=3}", "3"), ("The answer is 12,345.", "12345")],
                             workers=1, timeout_s=bound)
        return [(r.correct, r.timed_out, r.seconds) for r in results], time.perf_counter() - start

    results, wall = ray.get(grade_in_worker.remote(), timeout=120)
    (slow_ok, slow_timed_out, slow_s), (eq_ok, _, _), (prose_ok, _, _) = results
    assert slow_timed_out and not slow_ok and slow_s <= bound + 0.5
    assert eq_ok and prose_ok
    assert wall < 60  # worker start-up on a loaded box; unbounded, the first sample alone runs for minutes
