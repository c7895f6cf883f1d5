"""The tokenized cache: reuse, exact invalidation, crash safety, flat memory, identical items."""
import json
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from omegaconf import OmegaConf

from verl_ext.data import cache
from verl_ext.data.datasets import ChatSFTDataset, PromptResponseDataset
from verl_ext.data.masks import ChatEncoder
from verl_ext.rows import DataError


def rows(n, words=6, offset=0):
    return [
        {"messages": [{"role": "system", "content": "Be brief."},
                      {"role": "user", "content": f"Question {i + offset}: " + "why " * (i % 5)},
                      {"role": "assistant", "content": f"Answer {i + offset}. " + "because " * words,
                       "reasoning_content": f"think {i}" if i % 2 and i % 3 else ""},
                      {"role": "user", "content": "more?"},
                      {"role": "assistant", "content": "no " * (1 + i % 3)}],
         "enable_thinking": bool(i % 3)}
        for i in range(n)
    ]


def write(path, data):
    pq.write_table(pa.Table.from_pylist(data), path)
    return str(path)


def cfg(cache_dir, **kw):
    return OmegaConf.create({"max_length": 512, "truncation": "error", "pad_mode": "no_padding",
                             "cache_dir": str(cache_dir), **kw})


@pytest.fixture
def renders(monkeypatch):
    """Counts chat-template renders (every encode renders at least once)."""
    calls = {"n": 0}
    original = ChatEncoder.render

    def counting(self, *a, **k):
        calls["n"] += 1
        return original(self, *a, **k)

    monkeypatch.setattr(ChatEncoder, "render", counting)
    return calls


def items(ds):
    return [(ds[i]["input_ids"].tolist(), ds[i]["loss_mask"].tolist()) for i in range(len(ds))]


def test_second_construction_reuses_cache_and_items_are_identical(tmp_path, qwen3_tokenizer, renders):
    path = write(tmp_path / "t.parquet", rows(40))
    first = ChatSFTDataset(path, qwen3_tokenizer, cfg(tmp_path / "c"))
    assert renders["n"] > 0 and first.cache_path
    renders["n"] = 0
    second = ChatSFTDataset(path, qwen3_tokenizer, cfg(tmp_path / "c"))
    assert renders["n"] == 0, "a second construction must not render the chat template"
    assert second.cache_path == first.cache_path
    off = ChatSFTDataset(path, qwen3_tokenizer, cfg(tmp_path / "c", cache="off"))
    assert off.cache_path is None
    assert items(first) == items(second) == items(off)
    assert second.stats == first.stats and second.stats["samples"] == 40


@pytest.mark.parametrize(
    "change",
    ["touch", "template", "max_length", "thinking", "multiturn_mode", "tools_key", "content_hash"],
)
def test_fingerprint_inputs_rebuild(tmp_path, qwen3_tokenizer, renders, monkeypatch, change):
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows(12)))
    path = str(path)
    base = cfg(tmp_path / "c", cache_hash="content" if change == "content_hash" else "stat")
    first = ChatSFTDataset(path, qwen3_tokenizer, base)
    renders["n"] = 0
    config = base
    if change == "touch":
        st = os.stat(path)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    elif change == "content_hash":  # same size and mtime, other bytes: only a content hash sees it
        st = os.stat(path)
        text = open(path).read()
        open(path, "w").write(text.replace("Answer 3.", "Answer 4."))
        assert os.stat(path).st_size == st.st_size
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    elif change == "template":
        monkeypatch.setattr(qwen3_tokenizer, "chat_template", qwen3_tokenizer.chat_template + "{{- '' }}")
    elif change == "max_length":
        config = cfg(tmp_path / "c", max_length=400)
    elif change == "thinking":
        config = cfg(tmp_path / "c", enable_thinking_default=False)
    elif change == "multiturn_mode":
        config = cfg(tmp_path / "c", multiturn_mode="per_turn")
    elif change == "tools_key":
        config = cfg(tmp_path / "c", tools_key="functions")
    second = ChatSFTDataset(path, qwen3_tokenizer, config)
    assert renders["n"] > 0, f"{change} must rebuild"
    assert second.cache_path != first.cache_path


def test_options_that_do_not_change_tokens_reuse(tmp_path, qwen3_tokenizer, renders):
    path = write(tmp_path / "t.parquet", rows(12))
    first = ChatSFTDataset(path, qwen3_tokenizer, cfg(tmp_path / "c", train_batch_size=8))
    renders["n"] = 0
    again = ChatSFTDataset(path, qwen3_tokenizer, cfg(tmp_path / "c", train_batch_size=64, micro_batch_size_per_gpu=2,
                                                      num_workers=4, pad_mode="right", cache_workers=1))
    assert renders["n"] == 0 and again.cache_path == first.cache_path


def test_rebuild_mode_and_max_samples(tmp_path, qwen3_tokenizer, renders, monkeypatch):
    path = write(tmp_path / "t.parquet", rows(12))
    ChatSFTDataset(path, qwen3_tokenizer, cfg(tmp_path / "c"))
    renders["n"] = 0
    # rebuild = once per run: a cache created after this process started counts as rebuilt
    monkeypatch.setattr(cache, "_process_start", lambda: time.time())
    rebuilt = ChatSFTDataset(path, qwen3_tokenizer, cfg(tmp_path / "c", cache="rebuild"))
    assert renders["n"] > 0 and len(rebuilt) == 12
    few = ChatSFTDataset(path, qwen3_tokenizer, cfg(tmp_path / "c"), max_samples=5)
    assert len(few) == 5 and few.cache_path != rebuilt.cache_path


def test_parallel_build_equals_single_process(tmp_path, qwen3_tokenizer):
    path = write(tmp_path / "t.parquet", rows(300))
    one = ChatSFTDataset(path, qwen3_tokenizer, cfg(tmp_path / "c", cache="off", cache_workers=1))
    two = ChatSFTDataset(path, qwen3_tokenizer, cfg(tmp_path / "c2", cache_workers=2))
    assert cache.read_meta(two.cache_path)["stats"]["workers"] == 2
    assert items(one) == items(two)
    assert [one.store.ref(i) for i in (0, 150, 299)] == [two.store.ref(i) for i in (0, 150, 299)]


def test_bad_row_in_parallel_build_names_file_and_row_and_leaves_no_cache(tmp_path, qwen3_tokenizer):
    data = rows(200)
    data[137]["messages"][1]["role"] = "wizard"
    path = write(tmp_path / "t.parquet", data)
    with pytest.raises(DataError, match=r"t.parquet, row 137: messages\[1\] has role 'wizard'"):
        ChatSFTDataset(path, qwen3_tokenizer, cfg(tmp_path / "c", cache_workers=2))
    left = sorted(p.name for p in (tmp_path / "c").iterdir())
    assert not [n for n in left if ".tmp-" in n] and all(n.endswith((".lock", ".error")) for n in left), left


def test_truncation_counts_are_stored(tmp_path, qwen3_tokenizer):
    path = write(tmp_path / "t.parquet", rows(6, words=200) + rows(4))
    ds = ChatSFTDataset(path, qwen3_tokenizer, cfg(tmp_path / "c", max_length=120, truncation="left"))
    again = ChatSFTDataset(path, qwen3_tokenizer, cfg(tmp_path / "c", max_length=120, truncation="left"))
    assert ds.stats["truncated"] == again.stats["truncated"] == 6
    assert max(len(again[i]["input_ids"]) for i in range(len(again))) == 120


def test_prompt_response_dataset_cached(tmp_path, qwen3_tokenizer, renders):
    path = write(tmp_path / "pr.parquet", [{"problem": f"{i}+1?", "solution": f"\\boxed{{{i + 1}}}"} for i in range(10)])
    c = cfg(tmp_path / "c", prompt_key="problem", response_key="solution")
    first = PromptResponseDataset(path, qwen3_tokenizer, c)
    renders["n"] = 0
    second = PromptResponseDataset(path, qwen3_tokenizer, c)
    assert renders["n"] == 0 and items(first) == items(second)
    # the same file through the other class is another fingerprint
    with pytest.raises(DataError, match="no 'messages' column"):
        ChatSFTDataset(path, qwen3_tokenizer, cfg(tmp_path / "c"))


def _build_script(path, cache_dir, slow_s):
    return textwrap.dedent(f"""
        import time
        from omegaconf import OmegaConf
        from verl_ext.assets import load_qwen3_tokenizer
        from verl_ext.data.datasets import ChatSFTDataset
        from verl_ext.data.masks import ChatEncoder
        original = ChatEncoder.encode
        def slow(self, *a, **k):
            time.sleep({slow_s})
            return original(self, *a, **k)
        ChatEncoder.encode = slow
        cfg = OmegaConf.create({{"max_length": 512, "cache_dir": {str(cache_dir)!r}, "cache_workers": 1}})
        ChatSFTDataset({path!r}, load_qwen3_tokenizer(), cfg)
        print("BUILT")
    """)


def test_kill_9_during_build_then_restart(tmp_path, qwen3_tokenizer):
    path = write(tmp_path / "t.parquet", rows(600))
    cdir = tmp_path / "c"
    proc = subprocess.Popen([sys.executable, "-c", _build_script(path, cdir, 0.05)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and not list(cdir.glob("*.tmp-*")):
        time.sleep(0.1)
    assert list(cdir.glob("*.tmp-*")), "the build never started"
    time.sleep(1.0)  # mid-build: some batches may be written
    proc.kill()
    proc.wait()
    assert proc.returncode == -9
    assert not [p for p in cdir.iterdir() if (p / "meta.json").exists()], "a killed build must not look complete"
    ds = ChatSFTDataset(path, qwen3_tokenizer, cfg(cdir))
    assert len(ds) == 600
    assert not list(cdir.glob("*.tmp-*")), "leftovers of the killed build must be removed"
    off = ChatSFTDataset(path, qwen3_tokenizer, cfg(cdir, cache="off"))
    assert items(ds) == items(off)


def test_concurrent_builders_build_once(tmp_path, qwen3_tokenizer):
    """Two processes (two jobs, or two nodes on a shared filesystem) start together: one builds,
    the other waits on the lock and maps the result."""
    path = write(tmp_path / "t.parquet", rows(60))
    cdir = tmp_path / "c"
    script = _build_script(path, cdir, 0.02) + "\nimport verl_ext.data.cache as c, json, glob\n"
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    built = [err.count("tokenized cache built") for _, err in outs]
    assert sorted(built) == [0, 1], outs
    assert len([p for p in cdir.iterdir() if p.is_dir()]) == 1


def test_other_local_ranks_wait_for_rank_0_and_share_its_error(tmp_path, qwen3_tokenizer, monkeypatch):
    path = write(tmp_path / "t.parquet", [{"messages": [{"role": "user", "content": "q"}]}])
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(DataError, match="no trained assistant turn") as e0:
        ChatSFTDataset(path, qwen3_tokenizer, cfg(tmp_path / "c"))
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(DataError) as e1:
        ChatSFTDataset(path, qwen3_tokenizer, cfg(tmp_path / "c"))
    assert str(e1.value) == str(e0.value)


MEMORY_SCRIPT = """
import json, sys
from omegaconf import OmegaConf
from verl_ext.assets import load_qwen3_tokenizer
from verl_ext.data.datasets import ChatSFTDataset

def anon_kib():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1])

tok = load_qwen3_tokenizer()
cfg = OmegaConf.create({"max_length": 2048, "cache_dir": sys.argv[2]})
import torch, numpy  # noqa: F401  (loaded before the first reading)
before = anon_kib()
ds = ChatSFTDataset(sys.argv[1], tok, cfg)
opened = anon_kib()
total = 0
for i in range(len(ds)):
    total += int(ds[i]["input_ids"].sum() % 7)
print(json.dumps({"open_kib": opened - before, "growth_kib": anon_kib() - opened, "n": len(ds), "path": ds.cache_path}))
"""


def test_mapping_process_memory_does_not_grow_with_the_data(tmp_path, qwen3_tokenizer):
    path = write(tmp_path / "t.parquet", rows(3000, words=600))
    cdir = tmp_path / "c"
    built = ChatSFTDataset(path, qwen3_tokenizer, cfg(cdir, max_length=2048))
    data_kib = os.path.getsize(os.path.join(built.cache_path, "data.arrow")) / 1024
    assert data_kib > 8 * 1024, data_kib  # big enough for the bound to mean something
    out = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, path, str(cdir)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["n"] == 3000 and res["path"] == built.cache_path
    # a copy of the samples in private memory would be >= the data file; mapped pages are shared
    assert res["growth_kib"] < 0.1 * data_kib, (res, data_kib)
    assert res["open_kib"] < 64 * 1024, res  # fingerprint + map: a constant, not a copy of the data


def test_dataloader_workers_share_the_map(tmp_path, qwen3_tokenizer):
    from torch.utils.data import DataLoader

    path = write(tmp_path / "t.parquet", rows(50))
    ds = ChatSFTDataset(path, qwen3_tokenizer, cfg(tmp_path / "c"))
    loader = DataLoader(ds, batch_size=None, num_workers=2, multiprocessing_context="spawn")
    got = [(x["input_ids"].tolist(), x["loss_mask"].tolist()) for x in loader]
    assert got == items(ds)
    assert np.asarray(ds.store.lengths()).sum() == ds.stats["tokens"]
    trained = ds.store.trained_counts()
    assert trained.sum() == ds.stats["trained_tokens"]
    assert trained.tolist() == [int(ds[i]["loss_mask"].sum()) for i in range(len(ds))]


def test_missing_file_is_a_data_error(tmp_path, qwen3_tokenizer):
    with pytest.raises(DataError, match=r"nope.parquet: file not found \(check data.train_files"):
        ChatSFTDataset(str(tmp_path / "nope.parquet"), qwen3_tokenizer, cfg(tmp_path / "c"))


def test_store_counts_across_record_batches():
    """lengths/trained_counts per sample when the table has several chunks (big builds do)."""
    from verl_ext.data.token_store import Sample, TokenStore, to_batch
    from verl_ext.rows import RowRef

    def sample(n, trained, row):
        mask = np.zeros(n, np.int8)
        mask[n - trained:] = 1
        return Sample(np.arange(n), mask, RowRef("f", row), -1, n)

    batches = [to_batch([sample(5, 2, 0), sample(3, 3, 1)], {"f": 0}), to_batch([sample(7, 1, 2)], {"f": 0})]
    store = TokenStore(pa.Table.from_batches(batches), ["f"])
    assert store.lengths().tolist() == [5, 3, 7]
    assert store.trained_counts().tolist() == [2, 3, 1]
    assert store.get(2)[1].tolist() == [0] * 6 + [1] and store.ref(2).row == 2
