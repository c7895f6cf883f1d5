"""``verl-ext demo --minutes N``: the sizing arithmetic (the probe itself runs in the slow demo test)."""
import pytest

from verl_ext.apps import demo_budget as b
from verl_ext.apps.demo import _parse


def speed(train=150.0, prefill=1200.0, d0=0.06, d1=0.016, startup=6.0, start_s=0.0, backend="hf"):
    return b.Speed("bf16", train, startup, b.GenSpeed(backend, prefill, d0, d1, start_s))


FAST = speed()  # a 2-core CPU with native bf16 (measured: AMX)
SLOW = speed(train=38.0, prefill=330.0, d0=0.08, d1=0.054, startup=4.7)  # the same capped at AVX2 (fp32)


@pytest.mark.parametrize("s", [FAST, SLOW], ids=["native-bf16", "fp32-only"])
@pytest.mark.parametrize("minutes", [15, 30, 60])
def test_plan_fits_its_budget_when_it_says_so(s, minutes):
    p = b.plan(minutes * 60, s)
    assert p.total_s == pytest.approx(sum(p.eta.values()))
    if p.fits:
        assert p.total_s <= minutes * 60
        assert b.FLOOR_STEPS <= p.size.steps <= b.MAX_STEPS
    # one epoch at least: the rows cover the steps
    assert p.size.tc_train + p.size.math_train >= p.size.steps * p.size.batch


def test_more_time_buys_more_evaluation_and_steps():
    sizes = [b.plan(m * 60, SLOW).size for m in (15, 30, 60, 120)]
    episodes = [s.tc_episodes * s.tc_rounds for s in sizes]
    steps = [s.steps for s in sizes]
    assert episodes == sorted(episodes) and episodes[0] < episodes[-1]
    assert steps == sorted(steps) and steps[0] < steps[-1]


def test_a_faster_machine_gets_a_bigger_demo_in_the_same_budget():
    fast, slow = b.plan(900, FAST).size, b.plan(900, SLOW).size
    assert fast.steps > slow.steps
    assert fast.tc_episodes >= slow.tc_episodes and fast.math_problems >= slow.math_problems


def test_evaluations_take_at_most_half_a_budget_that_fits():
    p = b.plan(3600, FAST)
    assert p.fits and p.eta["eval before"] + p.eta["eval after"] <= 1800
    assert p.size.steps >= b.MIN_STEPS


def test_a_budget_too_small_is_said_and_still_trains_the_floor():
    p = b.plan(60, SLOW)
    assert not p.fits
    assert p.size.steps == b.FLOOR_STEPS
    assert (p.size.tc_episodes, p.size.tc_rounds, p.size.math_problems) == b.LADDER[0]
    assert "does NOT fit" in "\n".join(p.lines(SLOW))


def test_a_server_start_counts_against_each_evaluation():
    cheap = b.tc_eval_s(8, 6, FAST)
    assert b.tc_eval_s(8, 6, speed(start_s=40.0)) == pytest.approx(cheap + 40.0)


def test_replan_gives_the_steps_the_real_evaluation_left():
    p = b.plan(900, FAST)
    quick = b.replan_steps(p, FAST, elapsed_s=120, eval_s=60)
    slow = b.replan_steps(p, FAST, elapsed_s=300, eval_s=240)
    assert quick.size.steps > slow.size.steps >= b.FLOOR_STEPS
    assert quick.fits and quick.total_s <= 900
    assert quick.eta["eval after"] == 60  # the after-evaluation is costed at what the before one took
    hopeless = b.replan_steps(p, FAST, elapsed_s=890, eval_s=400)
    assert hopeless.size.steps == b.FLOOR_STEPS and not hopeless.fits


def test_sft_steps_get_the_time_the_rest_leaves():
    """The SFT steps' time budget (trainer.time_budget_s): what is left after the time spent, an after-
    evaluation as long as the before one, SFT start-up and export; never under FLOOR_STEPS estimated steps."""
    left = b.steps_budget_s(900, FAST, elapsed_s=120, eval_s=60)
    assert left == pytest.approx(900 - 120 - 60 - b.sft_s(0, FAST))
    assert left // b.step_s(FAST) == b.replan_steps(b.plan(900, FAST), FAST, 120, 60).size.steps or \
        b.replan_steps(b.plan(900, FAST), FAST, 120, 60).size.steps == b.MAX_STEPS
    assert b.steps_budget_s(900, FAST, elapsed_s=890, eval_s=400) == pytest.approx(b.FLOOR_STEPS * b.step_s(FAST))


def test_step_cost_scales_with_training_speed():
    assert b.step_s(speed(train=50.0)) > b.step_s(speed(train=100.0)) > b.step_s(speed(train=1e9)) > 0
    assert b.step_s(FAST, batch=16) == pytest.approx(2 * b.step_s(FAST, batch=8))


def test_plan_lines_name_the_dtype_backend_and_every_stage():
    p = b.plan(900, FAST)
    text = "\n".join(p.lines(FAST))
    assert "compute bf16" in text and "hf generation" in text
    for stage in ("eval before", "SFT + export", "eval after", "total"):
        assert stage in text


def test_fmt_s():
    assert (b.fmt_s(5), b.fmt_s(65), b.fmt_s(3600)) == ("5s", "1m05s", "60m00s")


def test_cli_rejects_a_non_positive_budget(capsys):
    with pytest.raises(SystemExit):
        _parse(["--minutes", "0"])
    assert "--minutes must be > 0" in capsys.readouterr().err
    assert _parse([]).minutes == 15
