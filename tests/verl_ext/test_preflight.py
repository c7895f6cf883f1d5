"""Each preflight check, tripped by a config, with the message it gives."""
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.e2e.helpers import with_overrides
from verl_ext.launch.preflight import check


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("pf")
    chat = [{"messages": [{"role": "user", "content": f"q{i} " * (3 + i)}, {"role": "assistant", "content": "a " * (2 + i)}]}
            for i in range(40)]
    pq.write_table(pa.Table.from_pylist(chat), d / "chat.parquet")
    pq.write_table(pa.Table.from_pylist([{"problem": "p", "solution": "s"}] * 8), d / "cols.parquet")
    return d


def base(model, data, *extra):
    """Defaults for a clean run; an extra with the same key replaces the default (extras may repeat)."""
    defaults = [f"model.path={model}", f"data.train_files={data / 'chat.parquet'}", "data.train_batch_size=8",
                "data.max_length=256", "trainer.n_gpus_per_node=2", f"trainer.default_local_dir={data / 'ck'}"]
    return with_overrides(defaults, extra)


def errors_of(args, nproc=None):
    return check(args, nproc=nproc).errors


def test_clean_config_passes_with_plan(tiny_model_dir, data):
    r = check(base(tiny_model_dir, data, "trainer.total_epochs=2"))
    assert r.ok, r.errors
    assert r.plan.steps_per_epoch == 5 and r.plan.total_steps == 10
    assert any("CPU platform" in n for n in r.notes)


@pytest.mark.parametrize(
    "extra, nproc, expect",
    [
        (["trainer.total_epochs=4", "trainer.total_epochs=15"], None, "trainer.total_epochs is given twice (trainer.total_epochs=4, then trainer.total_epochs=15)"),
        (["data.train_batch_size=7"], None, "data.train_batch_size=7 is global and is split over 2 data-parallel ranks"),
        (["data.use_dynamic_bsz=false", "data.micro_batch_size_per_gpu=3"], None, "not a multiple of data.micro_batch_size_per_gpu=3"),
        (["engine.ulysses_sequence_parallel_size=3"], 2, "does not divide the 2 processes"),
        (["engine.ulysses_sequence_parallel_size=3", "trainer.n_gpus_per_node=3", "data.train_batch_size=9"], 3, "does not divide num_attention_heads=4"),
        (["engine.ulysses_sequence_parallel_size=2", "model.use_remove_padding=false"], None, "needs model.use_remove_padding=True"),
        (["data.max_token_len_per_gpu=100"], None, "a full-length row cannot fit one micro batch"),
        (["data.max_length=8"], None, "exceed data.max_length=8; with data.truncation=error"),
        (["trainer.test_freq=5"], None, "data.val_files is not set"),
        (["gen_eval.enable=true"], None, "gen_eval.enable=true needs data.val_files"),
        (["trainer.resume_mode=resume_path", "trainer.resume_from_path=/nope/global_step_3"], None, "is not a folder"),
        (["trainer.resume_mode=sometimes"], None, "trainer.resume_mode='sometimes'"),
        (["data.dataset=fancy"], None, "data.dataset='fancy'"),
        (["trainer.not_a_key=1"], None, "config does not compose"),
    ],
)
def test_each_check_trips(tiny_model_dir, data, extra, nproc, expect):
    errs = errors_of(base(tiny_model_dir, data, *extra), nproc)
    assert any(expect in e for e in errs), errs


def test_missing_file_and_schema_mismatch(tiny_model_dir, data):
    errs = errors_of(base(tiny_model_dir, data, f"data.val_files={data / 'missing.parquet'}"))
    assert any("missing.parquet does not exist" in e for e in errs)
    errs = errors_of(base(tiny_model_dir, data, f"data.train_files={data / 'cols.parquet'}"))
    assert any("cols.parquet, row 0: no 'messages' column" in e and "data.dataset=prompt_response" in e for e in errs)
    ok = check(base(tiny_model_dir, data, f"data.train_files={data / 'cols.parquet'}", "data.dataset=prompt_response",
                    "data.prompt_key=problem", "data.response_key=solution"))
    assert ok.ok, ok.errors


def test_truncation_share_is_a_note_when_truncating(tiny_model_dir, data):
    r = check(base(tiny_model_dir, data, "data.max_length=40", "data.truncation=left"))
    assert r.ok, r.errors
    assert any("exceed data.max_length=40" in n and "truncated (left)" in n for n in r.notes)


def test_gpu_only_options_fall_back_with_a_note(tiny_model_dir, data):
    r = check(base(tiny_model_dir, data, "model.use_liger=true", "model.use_fused_kernels=true"))
    assert r.ok, r.errors
    assert any("use_liger=True" in n for n in r.notes) and any("use_fused_kernels" in n for n in r.notes)
    assert r.config.model.use_liger is False


def test_model_path_without_config(tmp_path, data):
    errs = errors_of(base(tmp_path, data))
    assert any("no config.json there" in e for e in errs)


def test_checkpoint_dir_not_writable_and_disk_short(tiny_model_dir, data, tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    if os.access(ro, os.W_OK):  # root ignores permission bits: simulate
        monkeypatch.setattr(os, "access", lambda p, mode: False if str(p).startswith(str(ro)) else True)
    errs = errors_of(base(tiny_model_dir, data, f"trainer.default_local_dir={ro / 'ck'}"))
    assert any("is not writable" in e for e in errs)
    monkeypatch.undo()
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10, 10, 1000))
    errs = errors_of(base(tiny_model_dir, data, "trainer.save_freq=1"))
    assert any("checkpoints need about" in e and "trainer.max_ckpt_to_keep" in e for e in errs)


@pytest.fixture(scope="module")
def base_model(tmp_path_factory, tiny_model_dir):
    """The tiny model as a base model ships: no chat template."""
    d = tmp_path_factory.mktemp("base-model")
    for f in tiny_model_dir.iterdir():
        if f.name != "chat_template.jinja":
            (d / f.name).symlink_to(f)
    return d


def test_no_chat_template_is_one_error_naming_both_ways_out(base_model, data):
    errs = errors_of(base(base_model, data, f"data.val_files={data / 'chat.parquet'}"))
    mine = [e for e in errs if "has no chat template" in e]
    assert len(mine) == 1, errs  # once, not per file or row
    assert "model.custom_chat_template=" in mine[0] and "data.dataset=prompt_response data.prompt_format=plain" in mine[0]


def test_base_model_trains_plain_or_with_a_custom_template(base_model, data, tmp_path):
    plain = check(base(base_model, data, f"data.train_files={data / 'cols.parquet'}", "data.dataset=prompt_response",
                       "data.prompt_key=problem", "data.response_key=solution", "data.prompt_format=plain"))
    assert plain.ok, plain.errors
    template = tmp_path / "chatml.jinja"
    template.write_text("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    custom = check(base(base_model, data, f"model.custom_chat_template={template}"))
    assert custom.ok, custom.errors
    assert custom.config.model.custom_chat_template == template.read_text()  # as the trainer hands it to verl
    errs = errors_of(base(base_model, data, "model.custom_chat_template=/nope/r1.jinja"))
    assert any("model.custom_chat_template='/nope/r1.jinja': no such file" in e for e in errs), errs


def test_a_validation_set_smaller_than_one_batch_is_named(tiny_model_dir, data):
    """verl validates in whole batches of data.train_batch_size, each dp rank its share, the rest
    dropped: 4 samples under a global batch of 8 give no batch at all (val/loss NaN)."""
    chat = pq.read_table(data / "chat.parquet")
    for n in (4, 11, 16):
        pq.write_table(chat.slice(0, n), data / f"val{n}.parquet")
    small = check(base(tiny_model_dir, data, f"data.val_files={data / 'val4.parquet'}", "trainer.test_freq=2"))
    assert small.ok, small.errors  # the run works (gen_eval uses val steps as its clock): a warning, not an error
    assert any("4 validation samples make no full batch of data.train_batch_size=8 (4 per dp rank x 2)" in w
               and "val/loss would be NaN" in w for w in small.warnings), small.warnings
    odd = check(base(tiny_model_dir, data, f"data.val_files={data / 'val11.parquet'}", "trainer.test_freq=2"))
    assert not odd.warnings and any("validation uses 8 of 11 samples" in n for n in odd.notes), odd.notes
    whole = check(base(tiny_model_dir, data, f"data.val_files={data / 'val16.parquet'}", "trainer.test_freq=2"))
    assert not whole.warnings and not any("validation uses" in n for n in whole.notes)
    # with sequence parallel over both processes there is one dp rank: 4 samples are still short of 8
    sp = check(base(tiny_model_dir, data, f"data.val_files={data / 'val4.parquet'}", "trainer.test_freq=2",
                    "engine.ulysses_sequence_parallel_size=2"))
    assert any("(8 per dp rank x 1)" in w for w in sp.warnings), sp.warnings
