from __future__ import annotations

import math
import subprocess
import sys

import pytest

from verl_ext_eval.backends import BACKENDS, UnknownBackendError, make_backend
from verl_ext_eval.backends.base import (
    SamplingParams,
    build_generation,
    entropy_from_top_logprobs,
    truncate_at_stop,
)


def test_sampling_flag():
    assert not SamplingParams().sampling
    assert SamplingParams(temperature=0.7).sampling
    assert not SamplingParams(temperature=0.7, do_sample=False).sampling
    assert SamplingParams(stop="Observation:").stop == ("Observation:",)
    assert SamplingParams(stop=["a", "b"]).stop == ("a", "b")
    hash(SamplingParams(stop=["a"]))  # frozen and hashable even when built from a list


def test_truncate_at_earliest_stop():
    assert truncate_at_stop("a b. c\nd", (".", "\n")) == ("a b", ".")
    assert truncate_at_stop("a b\nc. d", (".", "\n")) == ("a b", "\n")
    assert truncate_at_stop("abc", ("x", "")) == ("abc", None)
    assert truncate_at_stop("Action: go\nObs", ["\nObs"]) == ("Action: go", "\nObs")


def test_entropy_from_top_logprobs_hand_computed():
    # one step with the whole mass in two tokens (0.5/0.5) -> ln 2; one certain step -> 0
    assert entropy_from_top_logprobs([[math.log(0.5), math.log(0.5)], [0.0]]) == pytest.approx(math.log(2) / 2)
    # leftover mass 0.5 counts as one bucket: -(0.5 ln 0.5) * 2
    assert entropy_from_top_logprobs([[math.log(0.5)]]) == pytest.approx(math.log(2))
    assert entropy_from_top_logprobs([]) is None


def test_build_generation_maps_finish_and_cuts_stop():
    p = SamplingParams(stop=("###",))
    g = build_generation("answer ### junk", "stop", 7, p)
    assert (g.text, g.finish_reason, g.num_tokens, g.meta) == ("answer ", "stop", 7, {"matched_stop": "###"})
    g = build_generation("long", "length", None, SamplingParams(), [[0.0], [0.0], [0.0]])
    assert (g.finish_reason, g.num_tokens, g.entropy) == ("length", 3, 0.0)
    assert build_generation("x", "eos", 1, SamplingParams()).finish_reason == "stop"


def test_registry_names_and_errors():
    assert set(BACKENDS) == {"hf", "server", "sglang"}
    with pytest.raises(UnknownBackendError, match="choose one of hf, server, sglang"):
        make_backend("vllm")
    with pytest.raises(UnknownBackendError, match="no setting.*modelpath.*known: base_url"):
        make_backend("server", modelpath="x")


def test_importing_backends_is_lazy():
    code = ("import sys, verl_ext_eval.backends; from verl_ext_eval.backends import make_backend; "
            "print('sglang' in sys.modules, 'transformers' in sys.modules, 'httpx' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False", "False"]


def test_sglang_backend_without_cuda_says_what_to_use(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the in-process engine would start")
    from verl_ext_eval.backends.sglang_engine import BackendUnavailableError

    with pytest.raises(BackendUnavailableError, match="backend=server.*backend=hf"):
        make_backend("sglang", model_path=str(tmp_path))
