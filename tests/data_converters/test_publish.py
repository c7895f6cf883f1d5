import json
import logging

import pytest

from data_converters import publish
from data_converters.parquet_io import ConversionError


def _traj(i, loss):
    return {"item_id": f"textcraft_{i}", "conversations": [
        {"from": "human", "loss": None, "value": f"goal {i}"}, {"from": "gpt", "loss": loss, "value": "ok"}]}


@pytest.fixture
def src(tmp_path, write_jsonl, write_parquet):
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "textcraft_train.json").write_text(json.dumps([_traj(i, None) for i in range(3)] + [_traj(3, True)]))
    write_jsonl(folder / "textcraft_test.jsonl", [_traj(i, False) for i in range(10, 12)])
    write_jsonl(folder / "textcraft-dev.jsonl", [_traj(20, None)])
    write_parquet(folder / "extra_train.parquet", [_traj(30, True)])
    (folder / "original_readme.log").write_text("# TextCraft trajectories\n\nFrom AgentGym.\n")
    return folder


def test_split_of_file_names():
    from pathlib import Path

    assert publish.split_of(Path("textcraft_train.json"), "train") == "train"
    assert publish.split_of(Path("math-valid.jsonl"), "train") == "validation"
    assert publish.split_of(Path("gsm8k_test.jsonl"), "train") == "test"
    assert publish.split_of(Path("contest.jsonl"), "train") == "train"  # "test" inside a word does not count


def test_layout_card_and_load_dataset(src, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    dst = tmp_path / "dst"
    assert publish.main([str(src), "--out", str(dst)]) == 0
    assert sorted(p.name for p in (dst / "data").iterdir()) == [
        "test-textcraft_test.parquet", "train-extra_train.parquet", "train-textcraft_train.parquet",
        "validation-textcraft-dev.parquet"]
    assert sorted(p.name for p in (dst / "raw").iterdir()) == [
        "extra_train.parquet", "textcraft-dev.jsonl", "textcraft_test.jsonl", "textcraft_train.json"]
    readme = (dst / "README.md").read_text()
    assert readme.startswith("---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n")
    assert "path: data/validation-*.parquet" in readme and readme.rstrip().endswith("From AgentGym.")
    import datasets

    ds = datasets.load_dataset(str(dst), cache_dir=str(tmp_path / "cache"))
    assert {k: v.num_rows for k, v in ds.items()} == {"train": 5, "test": 2, "validation": 1}
    assert ds["test"][0]["conversations"][1]["loss"] is False
    assert sorted(ds["train"]["item_id"]) == sorted(f"textcraft_{i}" for i in (0, 1, 2, 3, 30))


def test_rerun_skips_existing_and_in_place_layout(src, write_jsonl):
    s1 = publish.publish_folder(src)  # in place: originals stay where they are
    assert not (src / "raw").exists() and (src / "textcraft_train.json").exists()
    mtime = (src / "data" / "train-textcraft_train.parquet").stat().st_mtime_ns
    s2 = publish.publish_folder(src)
    assert s2.notes["skipped_existing_parquet"] == 4 and s1.kept == s2.kept
    assert (src / "data" / "train-textcraft_train.parquet").stat().st_mtime_ns == mtime
    write_jsonl(src / "more_train.jsonl", [_traj(40, None)])
    s3 = publish.publish_folder(src)
    assert s3.notes["skipped_existing_parquet"] == 4 and s3.kept["train"] == 6


def test_bad_records_fail_unless_allowed(tmp_path, write_jsonl):
    folder = tmp_path / "s"
    write_jsonl(folder / "a_train.jsonl", [{"x": 1}], raw_lines=["{broken", "[1, 2]"])
    with pytest.raises(ConversionError, match="--allow-rejects"):
        publish.publish_folder(folder)
    assert not (folder / "data" / "train-a_train.parquet").exists()
    s = publish.publish_folder(folder, allow_rejects=True)
    assert s.kept["train"] == 1 and (folder / ".publish" / "a_train.jsonl.rejects.jsonl").exists()


def test_different_columns_refused(tmp_path, write_jsonl):
    folder = tmp_path / "s"
    write_jsonl(folder / "a_train.jsonl", [{"x": 1}])
    write_jsonl(folder / "a_test.jsonl", [{"y": "1"}])
    with pytest.raises(ConversionError, match="same columns"):
        publish.publish_folder(folder)


def test_push_with_mocked_hub(src, tmp_path, monkeypatch, caplog, capsys):
    import huggingface_hub

    calls = []

    class FakeApi:
        def __init__(self, *a, **kw):
            calls.append(("init", a, kw))

        def create_repo(self, repo_id, **kw):
            calls.append(("create_repo", repo_id, kw))

        def upload_folder(self, **kw):
            calls.append(("upload_folder", kw))

    secret = "hf_SECRETtoken123"
    monkeypatch.setenv("HF_TOKEN", secret)
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    caplog.set_level(logging.DEBUG)
    dst = tmp_path / "dst"
    assert publish.main([str(src), "--out", str(dst), "--repo-id", "me/textcraft", "--private"]) == 0
    assert calls[0] == ("init", (), {})  # the token is found by huggingface_hub, never passed around
    assert calls[1] == ("create_repo", "me/textcraft", {"repo_type": "dataset", "private": True, "exist_ok": True})
    upload = calls[2][1]
    assert upload["folder_path"] == str(dst) and upload["repo_id"] == "me/textcraft"
    assert upload["repo_type"] == "dataset" and ".publish/*" in upload["ignore_patterns"]
    out = capsys.readouterr()
    written = "".join(p.read_text(errors="replace") for p in dst.rglob("*") if p.is_file() and p.suffix != ".parquet")
    assert secret not in out.out + out.err + caplog.text + written


def test_push_without_token_is_a_clear_error(src, tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    with pytest.raises(ConversionError, match="HF_TOKEN"):
        publish.push(src, "me/x", False)
