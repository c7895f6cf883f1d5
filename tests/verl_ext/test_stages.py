import time

from verl_ext.launch.stages import StageLog


def test_stage_durations_and_watchdog_names_the_stuck_stage():
    lines = []
    log = StageLog(watchdog_s=0.2, emit=lines.append)
    log.start_watchdog()
    with log.stage("fast"):
        pass
    with log.stage("model load"):
        time.sleep(1.5)
    log.close()
    assert [name for name, _ in log.records] == ["fast", "model load"]
    assert log.records[1][1] >= 1.5
    assert any("watchdog" in l and "'model load'" in l for l in lines), lines
    assert not any("watchdog" in l and "'fast'" in l for l in lines)
    assert any(l.startswith("[verl-ext] stage model load done in") for l in lines)
