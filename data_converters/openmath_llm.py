"""LLM stages over seed problems, through any ``verl_ext_eval.backends`` Backend.

``generate``: each seed problem → one new problem + solution from a generation prompt (the reply
must hold ``New problem:`` and ``Solution:`` sections; a think block is ignored).
``llm_filter``: an inference model answers each problem ``k`` times, the math grader decides, and
problems it solves at most ``max_solve_rate`` of the time are kept (the hard ones).
Both map a list of output rows to one ``Kept``/``Reject`` each, so accounting stays per row.
"""
from __future__ import annotations

import asyncio
import dataclasses
import re
from dataclasses import dataclass
from typing import Sequence

from data_converters.parquet_io import Reject
from data_converters.pipeline import Kept, Outcome
from verl_ext_eval.backends.base import Backend, SamplingParams
from verl_ext_eval.math.boxes import boxed_answer
from verl_ext_eval.math.extract import final_segment

SOLVE_PROMPT = ("Solve the following math problem. Reason step by step and put the final answer "
                "in \\boxed{{}}.\n\n{problem}")
GENERATION_PROMPT = """Here is a seed math problem:

{problem}

Write one new, self-contained problem of similar or higher difficulty on a related topic (not a \
rephrasing of the seed), then solve it step by step with the final answer in \\boxed{{}}.
Reply in exactly this format:
New problem:
<the new problem>

Solution:
<the solution>"""
_SECTIONS = re.compile(r"new problem\s*:\s*(?P<problem>.+?)\s*\n\s*solution\s*:\s*(?P<solution>.+)",
                       re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class LLMOptions:
    params: SamplingParams = SamplingParams(max_new_tokens=4096)
    k: int = 4  # answers per problem (llm filter)
    max_solve_rate: float = 0.25  # keep problems solved at most this share of the k tries
    solve_prompt: str = SOLVE_PROMPT  # {problem}
    generation_prompt: str = GENERATION_PROMPT  # {problem}
    concurrency: int = 64  # requests in flight
    model_name: str = "llm"  # recorded in generation_model of generated rows


def parse_generation(text: str) -> tuple[str, str] | Reject:
    """A generation reply → (new problem, solution), or a Reject."""
    segment = final_segment(text)
    if segment is None:
        return Reject("generation_unclosed_think", text[-200:])
    m = _SECTIONS.search(segment)
    if m is None:
        return Reject("generation_unparseable", "no 'New problem:' / 'Solution:' sections")
    problem, solution = m.group("problem").strip(), m.group("solution").strip()
    if not problem or not solution:
        return Reject("generation_unparseable", "empty problem or solution")
    return problem, solution


async def _chat_all(backend: Backend, prompts: Sequence[str], params: Sequence[SamplingParams], limit: int) -> list[str]:
    gate = asyncio.Semaphore(limit)

    async def one(prompt: str, p: SamplingParams) -> str:
        async with gate:
            return (await backend.chat([{"role": "user", "content": prompt}], p)).text

    return list(await asyncio.gather(*(one(t, p) for t, p in zip(prompts, params))))


def _params_for(params: SamplingParams, j: int) -> SamplingParams:
    """The j-th sample of a problem gets its own seed (identical seeds would repeat answers)."""
    return params if params.seed is None else dataclasses.replace(params, seed=params.seed + j)


async def generate(rows: Sequence[dict], backend: Backend, opts: LLMOptions) -> list[Outcome]:
    """One new problem per seed row; the new row replaces the seed's text columns."""
    prompts = [opts.generation_prompt.format(problem=r["prompt"]) for r in rows]
    replies = await _chat_all(backend, prompts, [opts.params] * len(rows), opts.concurrency)
    out: list[Outcome] = []
    for row, reply in zip(rows, replies):
        parsed = parse_generation(reply)
        if isinstance(parsed, Reject):
            out.append(parsed)
            continue
        problem, solution = parsed
        answer = boxed_answer(solution)
        new = dict.fromkeys(row)
        new.update(
            prompt=problem, response=solution,
            messages=[{"role": "user", "content": problem}, {"role": "assistant", "content": solution}],
            expected_answer=answer, answer=answer, problem_source="generated", problem_type=(
                "has_answer_extracted" if answer is not None else "no_answer_extracted"),
            generation_model=opts.model_name, data_source=row.get("data_source"), seed_problem=row["prompt"],
        )
        out.append(Kept(new, notes=() if answer is not None else ("generated_without_boxed_answer",)))
    return out


async def llm_filter(rows: Sequence[dict], backend: Backend, grader, opts: LLMOptions) -> list[Outcome]:
    """Keep rows whose problem the model solves in at most ``max_solve_rate`` of ``k`` tries;
    ``grader`` is an ``verl_ext_eval.math.grading.MathGrader`` (``grade_many([(response, gold)])``)."""
    graded = [i for i, r in enumerate(rows) if r.get("answer")]
    prompts = [opts.solve_prompt.format(problem=rows[i]["prompt"]) for i in graded for _ in range(opts.k)]
    params = [_params_for(opts.params, j) for _ in graded for j in range(opts.k)]
    replies = await _chat_all(backend, prompts, params, opts.concurrency)
    golds = [rows[i]["answer"] for i in graded for _ in range(opts.k)]
    results = grader.grade_many(list(zip(replies, golds))) if replies else []
    out: list[Outcome] = [Reject("missing_field:answer", "no gold answer to grade the model against")] * len(rows)
    for n, i in enumerate(graded):
        solved = sum(r.correct for r in results[n * opts.k:(n + 1) * opts.k]) / opts.k
        if solved > opts.max_solve_rate:
            out[i] = Reject("llm_solved_too_often", f"solved {solved:.3f} > {opts.max_solve_rate}")
        else:
            out[i] = Kept({**rows[i], "llm_solve_rate": solved})
    return out


class LLMStage:
    """Runs ``generate`` and/or ``llm_filter`` on batches of rows from synchronous code, on one
    event loop for the whole run (backends may hold loop-bound state)."""

    def __init__(self, backend: Backend, opts: LLMOptions, do_generate: bool, do_filter: bool, grader=None) -> None:
        if do_filter and grader is None:
            raise ValueError("llm filter needs a grader")
        self.backend, self.opts, self.do_generate, self.do_filter, self.grader = backend, opts, do_generate, do_filter, grader
        self._loop = asyncio.new_event_loop()

    def __call__(self, rows: Sequence[dict]) -> list[Outcome]:
        outcomes: list[Outcome] = [Kept(dict(r)) for r in rows]
        if self.do_generate and rows:
            outcomes = self._loop.run_until_complete(generate(rows, self.backend, self.opts))
        if self.do_filter:
            live = [i for i, o in enumerate(outcomes) if isinstance(o, Kept)]
            if live:
                filtered = self._loop.run_until_complete(
                    llm_filter([outcomes[i].row for i in live], self.backend, self.grader, self.opts))
                for i, o in zip(live, filtered):
                    outcomes[i] = Kept(o.row, notes=outcomes[i].notes) if isinstance(o, Kept) else o
        return outcomes

    def close(self) -> None:
        try:
            self._loop.run_until_complete(self.backend.close())
        finally:
            self._loop.close()
            if self.grader is not None:
                self.grader.close()
