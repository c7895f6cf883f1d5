"""Hydra-style ``key=value`` overrides onto a dataclass or dict default config, strictly.

Unlike Hydra, a key given twice is an error (``trainer.total_epochs=4 ... trainer.total_epochs=15``
silently took the last one), and every problem (unknown key with close matches, type error,
duplicate) is collected and raised once. Values are parsed by Hydra's own override grammar
(``hydra.core.override_parser``): ints, floats, bools, ``null``, ``[a,b]`` lists, ``{k:v}`` dicts,
quoted strings.
"""
from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Any, Iterable

from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

OPS = ("set", "add", "force", "delete")
_PREFIXES = (("++", "force"), ("+", "add"), ("~", "delete"))


class OverrideError(ValueError):
    """One or more overrides cannot be applied; ``problems`` lists each (the message joins them)."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} bad override(s):\n{lines}")


class DuplicateOverrideError(OverrideError):
    """The same key was given more than once (Hydra would silently keep the last)."""

    def __init__(self, duplicates: list[tuple[str, str, str]]):
        self.duplicates = list(duplicates)
        super().__init__(
            [
                f"{key!r} is given twice: {key}={first} and later {key}={second}; keep one of them"
                for key, first, second in self.duplicates
            ]
        )


@dataclass(frozen=True)
class Override:
    """One command-line override: ``key=value`` (set), ``+key=value`` (add), ``++key=value``
    (force: add or set), ``~key`` / ``~key=value`` (delete). ``value`` is the text as typed;
    ``parsed`` is the Python value Hydra's grammar gives it."""

    key: str
    value: str
    op: str
    index: int
    parsed: Any = field(default=None, compare=False, hash=False, repr=False)

    @property
    def text(self) -> str:
        prefix = {"set": "", "add": "+", "force": "++", "delete": "~"}[self.op]
        return f"{prefix}{self.key}" + ("" if self.op == "delete" and not self.value else f"={self.value}")


def _parser():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create()


def parse_overrides(args: Iterable[str]) -> list[Override]:
    """Parse ``key=value`` strings; a malformed one raises ``OverrideError`` naming it."""
    from hydra.errors import HydraException

    parser = _parser()
    out: list[Override] = []
    problems: list[str] = []
    for index, arg in enumerate(args):
        try:
            (parsed,) = parser.parse_overrides([arg])
        except HydraException as e:
            first_line = str(e).splitlines()[1] if len(str(e).splitlines()) > 1 else str(e)
            problems.append(f"argument {index} {arg!r}: {first_line.strip()}; expected key=value, +key=value, "
                            f"++key=value or ~key (quote values with spaces: key='a b')")
            continue
        if parsed.package is not None:
            problems.append(f"argument {index} {arg!r}: config groups with @package are not supported here")
            continue
        op = "set"
        body = arg
        for prefix, name in _PREFIXES:
            if arg.startswith(prefix):
                op, body = name, arg[len(prefix):]
                break
        raw = body.split("=", 1)[1] if "=" in body else ""
        out.append(Override(key=parsed.key_or_group, value=raw, op=op, index=index, parsed=parsed.value()))
    if problems:
        raise OverrideError(problems)
    return out


def find_duplicates(overrides: Iterable[Override]) -> list[tuple[str, str, str]]:
    """Each key given more than once, as ``(key, earlier_value, later_value)`` per repeat."""
    seen: dict[str, Override] = {}
    dups: list[tuple[str, str, str]] = []
    for o in overrides:
        if o.key in seen:
            dups.append((o.key, seen[o.key].value, o.value))
        seen[o.key] = o
    return dups


def _all_keys(node: Any, prefix: str = "") -> list[str]:
    keys: list[str] = []
    if isinstance(node, DictConfig):
        for k in node.keys():
            full = f"{prefix}{k}"
            keys.append(full)
            child = node._get_node(k)
            if isinstance(child, (DictConfig, ListConfig)) and not child._is_missing() and not child._is_none():
                keys.extend(_all_keys(child, full + "."))
    return keys


def _exists(cfg: DictConfig, key: str) -> bool:
    parent_key, _, leaf = key.rpartition(".")
    parent = OmegaConf.select(cfg, parent_key, throw_on_missing=False) if parent_key else cfg
    if isinstance(parent, DictConfig):
        return leaf in parent
    if isinstance(parent, ListConfig):
        return leaf.isdigit() and int(leaf) < len(parent)
    return False


def _is_structured(cfg: DictConfig, parent_key: str) -> bool:
    parent = OmegaConf.select(cfg, parent_key, throw_on_missing=False) if parent_key else cfg
    return isinstance(parent, DictConfig) and dataclasses.is_dataclass(parent._metadata.object_type)


def _close_keys_hint(cfg: DictConfig, key: str) -> str:
    keys = _all_keys(cfg)
    close = difflib.get_close_matches(key, keys, n=3, cutoff=0.6)
    leaf = key.rpartition(".")[2]
    close += [k for k in keys if k.rpartition(".")[2] == leaf and k not in close][:3]
    return f"did you mean {', '.join(close)}?" if close else "see --help for the keys"


def _unknown_key(cfg: DictConfig, o: Override) -> str:
    hint = _close_keys_hint(cfg, o.key)
    return f"unknown key {o.key!r} in {o.text!r}: {hint} (use +{o.key}=... to add a new key to a dict config)"


def _to_container(defaults: Any) -> DictConfig:
    if isinstance(defaults, DictConfig):
        cfg = defaults.copy()
    elif dataclasses.is_dataclass(defaults):
        cfg = OmegaConf.structured(defaults)
    elif isinstance(defaults, dict):
        cfg = OmegaConf.create(defaults)
    else:
        raise TypeError(f"defaults must be a dataclass, dict or DictConfig, not {type(defaults).__name__}")
    OmegaConf.set_struct(cfg, True)
    return cfg


def _apply_one(cfg: DictConfig, o: Override) -> str | None:
    """Apply ``o`` in place; return a problem description instead of raising."""
    exists = _exists(cfg, o.key)
    parent_key = o.key.rpartition(".")[0]
    if o.op == "set" and not exists:
        return _unknown_key(cfg, o)
    if o.op == "add" and exists:
        return f"{o.text!r}: {o.key!r} already exists; drop the '+' to change it (or use ++ to add-or-set)"
    if o.op == "delete":
        if not exists:
            return _unknown_key(cfg, o)
        current = OmegaConf.select(cfg, o.key, throw_on_missing=False)
        if o.value:
            current_plain = OmegaConf.to_container(current) if isinstance(current, (DictConfig, ListConfig)) else current
            if current_plain != o.parsed:
                return f"{o.text!r}: {o.key!r} is {current_plain!r}, not {o.parsed!r}; nothing deleted"
        parent = OmegaConf.select(cfg, parent_key) if parent_key else cfg
        if _is_structured(cfg, parent_key):
            return f"{o.text!r}: {o.key!r} is a field of a structured config and cannot be deleted"
        try:
            with open_dict(parent):
                del parent[o.key.rpartition(".")[2]]
        except OmegaConfBaseException:
            return f"{o.text!r}: {o.key!r} is a field of a structured config and cannot be deleted"
        return None
    if not exists and _is_structured(cfg, parent_key):
        return (f"{o.text!r}: cannot add {o.key!r}: {parent_key or 'the config'} is a structured config "
                f"that only takes its own fields; {_close_keys_hint(cfg, o.key)}")
    try:
        if exists:
            OmegaConf.update(cfg, o.key, o.parsed, merge=False)
        else:
            with open_dict(cfg):
                OmegaConf.update(cfg, o.key, o.parsed, merge=False, force_add=True)
    except OmegaConfBaseException as e:
        msg = str(e).splitlines()[0]
        if not exists:
            return f"{o.text!r}: cannot add {o.key!r} ({msg}); structured configs only take their own fields"
        node = OmegaConf.select(cfg, parent_key) if parent_key else cfg
        expected = ""
        if isinstance(node, DictConfig):
            child = node._get_node(o.key.rpartition(".")[2])
            if child is not None:
                expected = f" (expected {getattr(child._metadata.ref_type, '__name__', child._metadata.ref_type)})"
        return f"bad value for {o.key!r} in {o.text!r}{expected}: {msg}"
    return None


def apply_overrides(defaults: Any, args: Iterable[str]) -> DictConfig:
    """Parse ``args`` and apply them onto ``defaults`` (dataclass class/instance, dict or DictConfig).

    Returns a struct-mode ``DictConfig`` (typed for dataclasses). Raises ``OverrideError`` listing
    every problem at once (``DuplicateOverrideError`` when keys repeat).
    """
    overrides = parse_overrides(args)
    dups = find_duplicates(overrides)
    if dups:
        raise DuplicateOverrideError(dups)
    cfg = _to_container(defaults)
    problems = [p for p in (_apply_one(cfg, o) for o in overrides) if p]
    if problems:
        raise OverrideError(problems)
    return cfg


def build_config(defaults: Any, args: Iterable[str]) -> Any:
    """``apply_overrides`` then back to Python: a dataclass instance for dataclass defaults,
    else a plain dict."""
    cfg = apply_overrides(defaults, args)
    if dataclasses.is_dataclass(defaults):
        try:
            return OmegaConf.to_object(cfg)
        except OmegaConfBaseException as e:
            raise OverrideError([f"config is incomplete: {str(e).splitlines()[0]}"]) from e
    return OmegaConf.to_container(cfg, resolve=True)
