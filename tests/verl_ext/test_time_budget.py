"""trainer.time_budget_s: the run ends after the last step whose successor would not fit."""
import pytest
from omegaconf import OmegaConf

from tests.e2e.helpers import with_overrides
from verl_ext.launch.preflight import check
from verl_ext.training.trainer import TimeBudget


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def run(budget, step_times):
    """Steps of the given durations; the 1-based step after which the budget says stop (None: never)."""
    clock = Clock()
    b = TimeBudget(budget, clock)
    for i, dt in enumerate(step_times, 1):
        b.step_started()
        clock.now += dt
        if b.step_done():
            return i, b.why()
    return None, None


def test_stops_when_the_next_step_would_end_past_the_budget():
    # 10 s steps, 35 s budget: after step 3 (30 s) a 4th would end at 40 s
    assert run(35, [10] * 10)[0] == 3
    assert run(40, [10] * 10)[0] == 4  # the 4th ends exactly at the budget: it runs
    assert run(39.5, [10] * 10)[0] == 3


def test_projects_with_the_mean_step_time_past_the_warm_up():
    # one slow first step (warm-up), then 5 s steps: after step k, 40 + 5(k-1) s trained, next ~5 s
    step, why = run(100, [40] + [5] * 30)
    assert step == 13  # 100 s trained: another would end at 105
    assert "time budget 100s" in why and "100s trained" in why and "~5.0s" in why
    # growing steps: after step 4, 65 s + mean(10, 20, 30) = 85 fits; after step 5, 95 + 22.5 does not
    assert run(100, [5, 10, 20, 30] + [30] * 10)[0] == 5
    assert run(30, [40] * 5)[0] == 1  # one step is all it knows: it is the estimate


def test_no_budget_never_stops_and_time_between_steps_counts():
    assert run(None, [1000] * 5) == (None, None)
    clock = Clock()
    b = TimeBudget(30, clock)
    b.step_started()
    clock.now += 5
    assert not b.step_done()
    clock.now += 20  # validation / checkpoint between steps is training time too
    b.step_started()
    clock.now += 5
    assert b.step_done()  # 30 s since the first step started


def test_from_config():
    assert TimeBudget.from_config(OmegaConf.create({"trainer": {"time_budget_s": 90}})).budget_s == 90.0
    assert TimeBudget.from_config(OmegaConf.create({"trainer": {"time_budget_s": None}})).budget_s is None
    assert TimeBudget.from_config(OmegaConf.create({"trainer": {}})).budget_s is None


@pytest.mark.parametrize("value, ok", [("600", True), ("0", False), ("-5", False), ("soon", False)])
def test_preflight_checks_the_value(tiny_model_dir, tmp_path, value, ok):
    from tests.e2e.helpers import write_rows

    data = write_rows(tmp_path / "train.parquet", 8)
    args = with_overrides([f"model.path={tiny_model_dir}", f"data.train_files={data}", "data.train_batch_size=8",
                           "trainer.n_gpus_per_node=2", f"trainer.default_local_dir={tmp_path / 'ck'}"],
                          [f"trainer.time_budget_s={value}"])
    r = check(args)
    if ok:
        assert r.ok and any("trainer.time_budget_s=600: training ends at the last step that fits" in n for n in r.notes)
    else:
        assert any(f"trainer.time_budget_s=" in e and value in e and "seconds > 0" in e for e in r.errors), r.errors
