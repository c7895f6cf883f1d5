"""Settings of the math evaluation runner (``python -m verl_ext_eval.math key=value ...``): the one home
of every default; ``verl_ext.overrides`` applies command-line overrides onto ``MathEvalConfig``."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from verl_ext_eval.math.grading import DEFAULT_PERCENT, DEFAULT_TIMEOUT_S


@dataclass
class DataConfig:
    path: Optional[str] = None  # JSONL/JSON/Parquet; null = the bundled offline set
    format: str = "auto"  # auto | math | gsm8k


@dataclass
class BackendConfig:
    name: str = "hf"  # hf | server | sglang (verl_ext_eval.backends)
    model_path: Optional[str] = None
    base_url: Optional[str] = None  # server backend: an already running OpenAI-compatible server
    # replaces the model's chat template: inline Jinja or a .jinja file, as training's model.custom_chat_template
    # (hf, sglang; server: passed to the SGLang it launches with --chat-template)
    chat_template: Optional[str] = None
    options: dict = field(default_factory=dict)  # other backend settings: +backend.options.max_batch_size=4


@dataclass
class SamplingConfig:
    max_new_tokens: int = 512
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    seed: Optional[int] = 0  # per-sample seeds derive from it, the problem id and the sample index
    stop: List[str] = field(default_factory=list)
    logprobs: bool = False  # ask for log-probs (token entropy) where the backend supports it


@dataclass
class PromptConfig:
    template: Optional[str] = None  # inline, str.format style: {problem}, literal braces doubled
    from_config: Optional[str] = None  # training YAML with prompt_template / data.prompt_template
    system: Optional[str] = None
    mode: str = "chat"  # chat (chat template) | complete (raw text: what data.prompt_format=plain trains)
    enable_thinking: Optional[bool] = None  # passed to the chat template (Qwen3) when set


@dataclass
class GradingConfig:
    workers: Optional[int] = None  # grader processes; null = min(8, CPUs)
    timeout_s: float = DEFAULT_TIMEOUT_S  # hard bound per sample
    percent: str = DEFAULT_PERCENT  # as_fraction: 50\% = 0.5 too | strict: a percent sign is a unit (50\% = 50 only)
    expect_think: bool = False  # format requires a closed think block
    format_penalty: float = 0.0  # subtracted from the reward of badly formatted responses


@dataclass
class MathEvalConfig:
    data: DataConfig = field(default_factory=DataConfig)
    backend: BackendConfig = field(default_factory=BackendConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    grading: GradingConfig = field(default_factory=GradingConfig)
    n_samples: int = 1  # samples per problem
    pass_k: List[int] = field(default_factory=list)  # empty = 1 and n_samples
    concurrency: int = 16  # requests in flight
    limit: Optional[int] = None  # first N problems only
    out_dir: str = "outputs/eval_math"
    resume: bool = True  # false: refuse to touch an out_dir that already has samples


class RunConfigError(ValueError):
    """Settings that cannot work together, or a resume into an incompatible out_dir."""
