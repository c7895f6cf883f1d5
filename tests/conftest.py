import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


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
    from verl_ext import cache

    root = tmp_path_factory.mktemp("data-cache")
    original = cache.default_root
    cache.default_root = lambda: root
    yield root
    cache.default_root = original
