from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from omegaconf import DictConfig

from verl_ext.overrides import (
    DuplicateOverrideError,
    Override,
    OverrideError,
    apply_overrides,
    build_config,
    find_duplicates,
    parse_overrides,
)


@dataclass
class Trainer:
    total_epochs: int = 1
    lr: float = 1e-5
    project_name: str = "demo"
    tags: list[str] = field(default_factory=list)
    seed: int | None = None


@dataclass
class Config:
    trainer: Trainer = field(default_factory=Trainer)
    use_fast: bool = False


def test_parse_ops_values_and_index():
    ovs = parse_overrides(["a.b=1", "+c=[1,2]", "++d=null", "~e", "f='x y'", "g=1.5", "h=true", "i="])
    assert [(o.key, o.op, o.index) for o in ovs] == [
        ("a.b", "set", 0), ("c", "add", 1), ("d", "force", 2), ("e", "delete", 3),
        ("f", "set", 4), ("g", "set", 5), ("h", "set", 6), ("i", "set", 7),
    ]
    assert [o.value for o in ovs] == ["1", "[1,2]", "null", "", "'x y'", "1.5", "true", ""]
    assert [o.parsed for o in ovs] == [1, [1, 2], None, None, "x y", 1.5, True, ""]
    assert isinstance(ovs[0], Override)
    with pytest.raises(Exception):
        ovs[0].key = "z"  # frozen


def test_parse_error_names_argument():
    with pytest.raises(OverrideError, match="'trainer.lr'.*expected key=value"):
        parse_overrides(["a=1", "trainer.lr"])


def test_duplicates_name_key_and_both_values():
    args = ["trainer.total_epochs=4", "use_fast=true", "trainer.total_epochs=15"]
    assert find_duplicates(parse_overrides(args)) == [("trainer.total_epochs", "4", "15")]
    with pytest.raises(DuplicateOverrideError) as e:
        apply_overrides(Config, args)
    assert "trainer.total_epochs" in str(e.value) and "=4" in str(e.value) and "=15" in str(e.value)
    assert e.value.duplicates == [("trainer.total_epochs", "4", "15")]


def test_apply_onto_dataclass_types_and_values():
    cfg = apply_overrides(Config(), ["trainer.total_epochs=3", "trainer.lr=2e-4", "use_fast=true",
                                     "trainer.tags=[a,b]", "trainer.project_name='my run'", "trainer.seed=7"])
    assert isinstance(cfg, DictConfig)
    assert cfg.trainer.total_epochs == 3 and cfg.trainer.lr == pytest.approx(2e-4)
    assert cfg.use_fast is True and list(cfg.trainer.tags) == ["a", "b"]
    assert cfg.trainer.project_name == "my run" and cfg.trainer.seed == 7
    obj = build_config(Config, ["trainer.seed=null", "trainer.lr=1"])
    assert isinstance(obj, Config) and obj.trainer.seed is None and obj.trainer.lr == 1.0
    assert isinstance(obj.trainer.lr, float)


def test_unknown_key_lists_close_matches():
    with pytest.raises(OverrideError) as e:
        apply_overrides(Config, ["trainer.total_epoch=3"])
    assert "unknown key 'trainer.total_epoch'" in str(e.value)
    assert "trainer.total_epochs" in str(e.value)
    # a leaf placed under the wrong parent is suggested by name
    with pytest.raises(OverrideError, match="trainer.lr"):
        apply_overrides(Config, ["lr=0.1"])


def test_type_error_names_key_and_all_problems_at_once():
    with pytest.raises(OverrideError) as e:
        apply_overrides(Config, ["trainer.total_epochs=many", "trainer.nope=1"])
    assert len(e.value.problems) == 2
    assert "trainer.total_epochs" in e.value.problems[0] and "many" in e.value.problems[0]
    assert "int" in e.value.problems[0]


def test_add_force_delete_on_dict_defaults():
    defaults = {"model": {"path": "x", "dtype": "bf16"}, "n": 1}
    cfg = apply_overrides(defaults, ["+model.revision=main", "++n=5", "++m=2", "~model.dtype"])
    assert cfg.model.revision == "main" and cfg.n == 5 and cfg.m == 2 and "dtype" not in cfg.model
    assert defaults["model"]["dtype"] == "bf16"  # defaults untouched
    with pytest.raises(OverrideError, match="already exists"):
        apply_overrides(defaults, ["+n=2"])
    with pytest.raises(OverrideError, match="not 'other'"):
        apply_overrides(defaults, ["~model.path=other"])
    assert "path" not in apply_overrides(defaults, ["~model.path=x"]).model


def test_structured_config_refuses_new_keys_and_deletion():
    with pytest.raises(OverrideError, match="cannot add"):
        apply_overrides(Config, ["+trainer.extra=1"])
    with pytest.raises(OverrideError, match="cannot be deleted"):
        apply_overrides(Config, ["~trainer.lr"])
    assert apply_overrides(Config, ["++trainer.lr=0.5"]).trainer.lr == 0.5
