import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups off the markers
def pytest_collection_modifyitems(config, items):
    """The ``serial`` tests (trainings of 2 processes, Ray clusters) become one xdist group, collected
    first: one worker runs them in turn from the start while the other takes every other test (the
    long single-process ``slow`` ones last). Two trainings never run at once. ``serial(last=True)``
    (the SmolLM2 runs that also start evaluations and servers) go to the end of the serial chain, when
    the other worker is done and they have both cores. Without xdist (-n 0) the same order, in one process."""
    def is_serial(item):
        return item.get_closest_marker("serial") is not None

    serial = sorted((item for item in items if is_serial(item)),
                    key=lambda item: bool(item.get_closest_marker("serial").kwargs.get("last")))
    for item in serial:
        item.add_marker(pytest.mark.xdist_group("serial"))
    slow = [item for item in items if item.get_closest_marker("slow") and not is_serial(item)]
    fast = [item for item in items if not item.get_closest_marker("slow") and not is_serial(item)]
    items[:] = serial + fast + slow


@pytest.fixture(scope="session")
def qwen3_tokenizer():
    from verl_ext.assets import load_qwen3_tokenizer

    return load_qwen3_tokenizer()


@pytest.fixture(scope="session")
def tiny_model_dir():
    from verl_ext.assets import build_tiny_qwen3

    return build_tiny_qwen3()


@pytest.fixture(autouse=True, scope="session")
def _private_data_cache(tmp_path_factory):
    """In-process datasets cache under a session temp dir, not the user's ~/.cache."""
    from verl_ext.data import cache

    root = tmp_path_factory.mktemp("data-cache")
    original = cache.default_root
    cache.default_root = lambda: root
    yield root
    cache.default_root = original


def _write_jsonl(path: Path, rows, raw_lines=()) -> Path:
    """JSONL of ``rows``; ``raw_lines`` (str or bytes) are appended verbatim, one per line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        for row in rows:
            fh.write(json.dumps(row).encode() + b"\n")
        for line in raw_lines:
            fh.write((line.encode() if isinstance(line, str) else line) + b"\n")
    return path


@pytest.fixture
def write_jsonl():
    """``write_jsonl(path, rows, raw_lines=())``: JSONL fixtures built in code (bad lines verbatim)."""
    return _write_jsonl
