from __future__ import annotations

import json

import pytest

from verl_ext_eval.report import Section, markdown_table, mean_table, rate_table, wilson_interval, write_summary

RECORDS = [
    {"depth": 1, "success": True, "turns": 3},
    {"depth": 1, "success": True, "turns": 5},
    {"depth": 2, "success": False, "turns": 10},
    {"depth": 2, "success": True, "turns": 6},
    {"depth": 10, "success": False, "turns": 20},
    {"depth": 10, "success": None, "turns": None},  # crashed episode: counted, not scored
]


def test_rate_table_groups_numerically_and_counts_unscored():
    t = rate_table(RECORDS, "depth", "success")
    assert t.columns == ("depth", "n", "scored", "success", "rate", "ci95_low", "ci95_high")
    assert [r[0] for r in t.rows] == [1, 2, 10, "all"]  # 10 after 2, not lexicographic
    by = {r[0]: r for r in t.rows}
    assert by[1][1:5] == (2, 2, 2.0, 1.0) and by[1][5:] == pytest.approx((0.3424, 1.0), abs=1e-4)
    assert by[2][4] == pytest.approx(0.5)
    assert by[10][1:5] == (2, 1, 0.0, 0.0)
    assert by["all"][1:4] == (6, 5, 3.0) and by["all"][4] == pytest.approx(3 / 5)
    assert by["all"][5:] == pytest.approx((0.2307, 0.8824), abs=1e-4)  # over the 5 scored, not 6
    assert t.chart == ("depth", "rate")


def test_wilson_interval_matches_published_values():
    # reference values: Wilson (1927) score interval as tabulated by e.g. statsmodels proportion_confint
    assert wilson_interval(3, 5) == pytest.approx((0.2307, 0.8824), abs=1e-4)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(104, 200) == pytest.approx((0.4510, 0.5882), abs=1e-4)  # ADaPT's 0.52 on 200 seeds
    assert wilson_interval(0, 0) is None


def test_mean_table_stats():
    t = mean_table(RECORDS, "depth", "turns")
    by = {r[0]: r for r in t.rows}
    assert by[1][1:] == (2, 4.0, 4.0, 5.0)
    assert by["all"][1] == 5 and by["all"][2] == pytest.approx(44 / 5) and by["all"][3] == 6.0
    assert t.chart is None


def test_markdown_table_escapes_and_formats():
    md = markdown_table(("a", "b"), [("x|y", 0.12345), (None, True)])
    assert md.splitlines() == ["| a | b |", "|---|---|", "| x\\|y | 0.123 |", "| — | true |"]


def test_write_summary_files(tmp_path):
    summary = {"model": "tiny", "success_rate": 0.6, "success_rate_ci95": [0.2307, 0.8824], "by_depth": {"1": 1.0},
               "samples": [1, 2]}
    sections = [
        rate_table(RECORDS, "depth", "success", title="Success by depth"),
        mean_table(RECORDS, "depth", "turns", title="Turns"),
        Section("By subject", ("subject", "rate"), (("algebra", 0.5), ("geometry", 0.25)), text="note", chart=("subject", "rate")),
    ]
    written = write_summary(tmp_path / "out", summary, "TextCraft eval", sections)
    out = tmp_path / "out"
    assert json.loads((out / "summary.json").read_text()) == summary
    report = (out / "report.md").read_text()
    assert report.startswith("# TextCraft eval")
    assert "| success_rate | 0.600 |" in report and "| by_depth.1 | 1.000 |" in report
    assert "| success_rate_ci95 | [0.231, 0.882] |" in report and "samples" not in report
    assert "## Success by depth" in report and "![Success by depth](success_by_depth.png)" in report
    assert "## Turns" in report and "turns.png" not in report
    for name in ("success_by_depth", "by_subject"):
        data = written[name].read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000
    assert sorted(p.name for p in out.iterdir()) == ["by_subject.png", "report.md", "success_by_depth.png", "summary.json"]
