"""The math runner: fake backend (exact accuracy), data formats, prompts, resume, and an end-to-end
run on the tiny Qwen3 killed half-way and resumed."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from verl_ext_eval.backends.base import Generation, SamplingParams
from verl_ext_eval.math.bundled import load_bundled
from verl_ext_eval.math.problems import ProblemDataError, load_problems, problems_from_rows
from verl_ext_eval.math.prompts import DEFAULT_TEMPLATE, PromptError, render_prompt, resolve_prompt
from verl_ext_eval.math.run import MathEvalConfig, RunConfigError, run_eval
from verl_ext.overrides import DuplicateOverrideError, build_config

ROOT = Path(__file__).resolve().parents[3]


class FakeBackend:
    """Answers each problem from a table keyed by problem text; records what it was sent."""

    name = "fake"

    def __init__(self, answers: dict[str, str], fail_after: int | None = None):
        self.answers = answers
        self.fail_after = fail_after
        self.calls: list[tuple[list[dict], SamplingParams]] = []
        self.in_flight = self.max_in_flight = 0

    def _answer_for(self, text: str) -> str:
        for problem, answer in self.answers.items():
            if problem in text:
                return answer
        raise KeyError(text[:80])

    async def chat(self, messages, params):
        self.calls.append((messages, params))
        if self.fail_after is not None and len(self.calls) > self.fail_after:
            raise RuntimeError("backend went away")
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        await asyncio.sleep(0.01)
        self.in_flight -= 1
        text = self._answer_for(messages[-1]["content"])
        return Generation(text=text, num_tokens=len(text.split()), finish_reason="stop", entropy=0.5)

    async def complete(self, prompt, params):
        return await self.chat([{"role": "user", "content": prompt}], params)

    async def close(self):
        pass


def _cfg(tmp_path, *overrides):
    return build_config(MathEvalConfig, [f"out_dir={tmp_path / 'out'}", "grading.workers=1", *overrides])


def _read(path):
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


def test_fake_backend_accuracy_matches(tmp_path):
    rows = load_bundled()[:20]
    right = {r["id"] for i, r in enumerate(rows) if i % 3 != 0}  # 13 of 20 answered right
    answers = {r["problem"]: (f"Work.\nSo $\\boxed{{{r['answer']}}}$" if r["id"] in right else "\\boxed{-99999}")
               for r in rows}
    backend = FakeBackend(answers)
    summary = run_eval(_cfg(tmp_path, "limit=20", "concurrency=5"), backend=backend)
    assert summary["overall"]["accuracy"] == pytest.approx(len(right) / 20)
    assert summary["overall"]["n_samples"] == 20 and summary["overall"]["format_rate"] == 1.0
    assert 1 < backend.max_in_flight <= 5  # concurrent, and bounded by concurrency
    records = _read(tmp_path / "out" / "samples.jsonl")
    assert {r["id"] for r in records if r["correct"]} == right
    by_subject = {row["subject"]: row for row in summary["by_subject"]}
    for subject, row in by_subject.items():
        ids = [r["id"] for r in rows if r["subject"] == subject]
        assert row["accuracy"] == pytest.approx(sum(i in right for i in ids) / len(ids))
    assert (tmp_path / "out" / "report.md").exists() and (tmp_path / "out" / "summary.json").exists()
    # the default prompt is the Qwen-style suffix, sent as one user message
    messages, params = backend.calls[0]
    assert messages[-1]["content"].endswith("put your final answer within \\boxed{}.")
    assert params.max_new_tokens == 512 and params.temperature == 0.0


def test_n_samples_pass_at_k_and_resume_after_a_failure(tmp_path):
    rows = load_bundled()[:4]
    answers = {r["problem"]: f"\\boxed{{{r['answer']}}}" for r in rows}
    cfg = _cfg(tmp_path, "limit=4", "n_samples=3", "concurrency=1", "sampling.temperature=0.7")
    with pytest.raises(RuntimeError, match="backend went away"):
        run_eval(cfg, backend=FakeBackend(answers, fail_after=5))
    written = _read(tmp_path / "out" / "samples.jsonl")
    assert 0 < len(written) <= 5
    backend = FakeBackend(answers)
    summary = run_eval(cfg, backend=backend)
    records = _read(tmp_path / "out" / "samples.jsonl")
    assert len(records) == 12 and len({r["key"] for r in records}) == 12
    assert len(backend.calls) == 12 - len(written)  # only the missing samples were generated
    assert summary["overall"]["pass@1"] == 1.0 and summary["overall"]["pass@3"] == 1.0
    seeds = [p.seed for _, p in backend.calls]
    assert len(set(seeds)) == len(seeds)  # each (problem, sample) gets its own seed


def test_resume_into_a_different_run_is_refused(tmp_path):
    rows = load_bundled()[:2]
    answers = {r["problem"]: "\\boxed{1}" for r in rows}
    run_eval(_cfg(tmp_path, "limit=2"), backend=FakeBackend(answers))
    with pytest.raises(RunConfigError, match="sampling.temperature"):
        run_eval(_cfg(tmp_path, "limit=2", "sampling.temperature=0.5"), backend=FakeBackend(answers))
    with pytest.raises(RunConfigError, match="resume=false"):
        run_eval(_cfg(tmp_path, "limit=2", "resume=false"), backend=FakeBackend(answers))


def test_math_and_gsm8k_files(tmp_path):
    math_rows = [
        {"problem": "What is 1+1?", "solution": "Clearly $1+1=\\boxed{2}$.", "answer": None, "type": "Algebra",
         "subject": None, "level": "Level 1", "unique_id": "test/algebra/1.json"},
        {"problem": "Half of 1?", "solution": None, "answer": "\\frac{1}{2}", "type": None, "subject": "Prealgebra",
         "level": "Level 2", "unique_id": None},
    ]
    path = tmp_path / "math.parquet"
    pq.write_table(pa.Table.from_pylist(math_rows), path)
    probs = load_problems(path)
    assert [(p.id, p.answer, p.subject, p.level) for p in probs] == [
        ("test/algebra/1.json", "2", "Algebra", "Level 1"), ("math-1", "\\frac{1}{2}", "Prealgebra", "Level 2")]
    gsm = tmp_path / "gsm.jsonl"
    gsm.write_text("\n".join(json.dumps(r) for r in [
        {"question": "Tom has 3 apples and buys 4. How many?", "answer": "3+4=<<3+4=7>>7\n#### 7"},
        {"question": "How many legs do 2 cats have?", "answer": "#### 8"},
    ]) + "\n")
    probs = load_problems(gsm, "auto")
    assert [p.answer for p in probs] == ["7", "8"] and probs[0].id == "gsm-0"
    answers = {"Tom has 3": "3+4=7.\n#### 7", "legs": "Answer: 6"}
    summary = run_eval(_cfg(tmp_path, f"data.path={gsm}"), backend=FakeBackend(answers))
    assert summary["overall"]["accuracy"] == 0.5
    assert summary["extract_methods"] == {"gsm8k": 1, "answer_line": 1}


def test_bad_rows_are_reported_together():
    rows = [{"problem": "a", "solution": "no box"}, {"problem": "", "answer": "1"}, {"problem": "b", "answer": "2"}]
    with pytest.raises(ProblemDataError) as e:
        problems_from_rows(rows, "math", "data.jsonl")
    msg = str(e.value)
    assert "2 bad row(s)" in msg and "data.jsonl row 0" in msg and "data.jsonl row 1" in msg
    with pytest.raises(ProblemDataError, match="cannot tell the format"):
        problems_from_rows([{"text": "x"}], "auto", "f.jsonl")
    with pytest.raises(ProblemDataError, match="appears at rows 0 and 1"):
        problems_from_rows([{"id": "a", "problem": "x", "answer": "1"}, {"id": "a", "problem": "y", "answer": "2"}],
                           "math", "f.jsonl")


def test_prompt_from_training_config_and_inline(tmp_path):
    train_yaml = tmp_path / "sft.yaml"
    train_yaml.write_text("data:\n  prompt_template: \"{prompt}\\n\\nPut your final answer within \\\\boxed{{}}.\"\n"
                          "  system_prompt: You are a careful mathematician.\n")
    spec = resolve_prompt(None, str(train_yaml), None)
    assert render_prompt(spec.template, "1+1?") == "1+1?\n\nPut your final answer within \\boxed{}."
    assert spec.system == "You are a careful mathematician."
    null_yaml = tmp_path / "null.yaml"
    null_yaml.write_text("data:\n  prompt_template: null\n")
    assert render_prompt(resolve_prompt(None, str(null_yaml), None).template, "raw") == "raw"
    with pytest.raises(PromptError, match="none of"):
        (tmp_path / "empty.yaml").write_text("model: {}\n")
        resolve_prompt(None, str(tmp_path / "empty.yaml"), None)
    with pytest.raises(PromptError, match="placeholder"):
        resolve_prompt("Solve it.", None, None)
    with pytest.raises(PromptError, match="double literal braces"):
        resolve_prompt("{problem} in \\boxed{}", None, None)
    assert render_prompt(DEFAULT_TEMPLATE, "Q").startswith("Q\nPlease reason step by step")
    backend = FakeBackend({"What": "\\boxed{1}"})
    data = tmp_path / "one.jsonl"
    data.write_text(json.dumps({"problem": "What is 0+1?", "answer": "1"}) + "\n")
    run_eval(_cfg(tmp_path, f"data.path={data}", f"prompt.from_config={train_yaml}"), backend=backend)
    messages, _ = backend.calls[0]
    assert messages[0] == {"role": "system", "content": "You are a careful mathematician."}
    assert messages[1]["content"].startswith("What is 0+1?\n\nPut your final answer")


def test_complete_mode_sends_what_the_plain_format_trains(tmp_path, qwen3_tokenizer):
    """prompt.mode=complete: the raw prompt, rendered and tokenized exactly as data.prompt_format=plain
    trains it (the dataset's prompt ids are the prefix the evaluator sends)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from omegaconf import OmegaConf

    from verl_ext.data.datasets import PromptResponseDataset
    from verl_ext.data.prompt_format import MATH_PLAIN_TEMPLATE, prompt_ids

    spec = resolve_prompt(None, None, None, "complete")
    assert spec.template == MATH_PLAIN_TEMPLATE
    problem = "What is 0+1?"
    data = tmp_path / "one.jsonl"
    data.write_text(json.dumps({"problem": problem, "answer": "1"}) + "\n")
    backend = FakeBackend({"What": "1"})
    run_eval(_cfg(tmp_path, f"data.path={data}", "prompt.mode=complete"), backend=backend)
    sent = backend.calls[0][0][0]["content"]
    assert sent == "Solve this math problem:\n\nWhat is 0+1?\n\nAnswer:"
    train = tmp_path / "train.parquet"
    pq.write_table(pa.Table.from_pylist([{"problem": problem, "solution": " 1"}]), train)
    ds = PromptResponseDataset(str(train), qwen3_tokenizer, OmegaConf.create(
        {"prompt_key": "problem", "response_key": "solution", "prompt_format": "plain",
         "prompt_template": MATH_PLAIN_TEMPLATE, "cache": "off"}))
    ids, mask = ds[0]["input_ids"].tolist(), ds[0]["loss_mask"].tolist()
    assert ids[: mask.index(1)] == prompt_ids(qwen3_tokenizer, sent)


def test_training_config_format_must_match_the_mode(tmp_path):
    plain_yaml = tmp_path / "plain.yaml"
    plain_yaml.write_text("data:\n  prompt_format: plain\n  prompt_template: null\n")
    with pytest.raises(PromptError, match="data.prompt_format=plain: evaluate it with prompt.mode=complete"):
        resolve_prompt(None, str(plain_yaml), None, "chat")
    spec = resolve_prompt(None, str(plain_yaml), None, "complete")
    assert render_prompt(spec.template, "raw") == "raw"  # null template: training used the raw problem
    chat_yaml = tmp_path / "chat.yaml"
    chat_yaml.write_text("data:\n  prompt_format: chat\n  prompt_template: '{prompt}'\n")
    with pytest.raises(PromptError, match="evaluate it with prompt.mode=chat"):
        resolve_prompt(None, str(chat_yaml), None, "complete")


def test_overrides_are_strict():
    with pytest.raises(DuplicateOverrideError):
        build_config(MathEvalConfig, ["limit=2", "limit=3"])
    cfg = build_config(MathEvalConfig, ["sampling.stop=[\"</s>\"]", "+backend.options.max_batch_size=4"])
    assert cfg.sampling.stop == ["</s>"] and cfg.backend.options == {"max_batch_size": 4}


@pytest.mark.slow
def test_hf_tiny_model_killed_half_way_then_resumed(tmp_path, tiny_model_dir):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "verl_ext_eval.math", "-q", "backend.name=hf", f"backend.model_path={tiny_model_dir}",
           "limit=20", "sampling.max_new_tokens=24", "concurrency=2", "+backend.options.max_batch_size=2",
           "grading.workers=1", f"out_dir={out}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    samples = out / "samples.jsonl"
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and proc.poll() is None:
            if samples.exists() and len(samples.read_bytes().splitlines()) >= 4:
                break
            time.sleep(0.05)
        assert proc.poll() is None, f"finished or died before the kill: {proc.stderr.read().decode()[-2000:]}"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    first = len(samples.read_bytes().splitlines())
    assert 4 <= first < 20
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    records = _read(samples)
    assert len(records) == 20 and len({r["key"] for r in records}) == 20
    assert {r["id"] for r in records} == {r["id"] for r in load_bundled()[:20]}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["overall"]["n_samples"] == 20
    assert summary["run"]["generated_now"] <= 20 - first + 1  # at most a torn last line is redone
    assert all(r["num_tokens"] <= 24 for r in records)
