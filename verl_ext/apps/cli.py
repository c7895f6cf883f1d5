"""``verl-ext``: one command for the whole path. Each subcommand is a module with ``main(argv)``.

An application on top of all three packages (core, ``verl_ext_eval``, ``data_converters``).

  verl-ext train   overrides...      preflight + plan + verl's SFT trainer (torchrun)
  verl-ext check   overrides...      preflight + plan only
  verl-ext prepare [--ray] overrides...   build the tokenized cache ahead of time (same overrides as train)
  verl-ext convert NAME args...      data converters (fast_math_r1, openmath, math, textcraft, publish)
  verl-ext eval    textcraft|math overrides...   evaluation runners
  verl-ext export  CKPT [--out DIR] [--chat-template FILE]  FSDP checkpoint -> HF folder (LoRA merged)
  verl-ext submit  args...           submit a job to a Ray cluster
  verl-ext demo    [--minutes N] [--sglang] [--small]   the CPU demo sized to N minutes (15): data, eval, SFT, eval
"""
from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "train": "verl_ext.launch.train",
    "check": "verl_ext.launch.check",
    "prepare": "verl_ext.launch.prepare",
    "submit": "verl_ext.launch.submit",
    "demo": "verl_ext.apps.demo",
    "assets": "verl_ext.assets",
    "export": "verl_ext.launch.export",
}
EVALS = {"textcraft": "verl_ext_eval.textcraft.run", "math": "verl_ext_eval.math.run"}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd == "convert":
        from data_converters import CONVERTERS

        if not rest or rest[0] not in CONVERTERS:
            print(f"usage: verl-ext convert {{{','.join(CONVERTERS)}}} [args...]  (add --help after a name)")
            return 2
        return importlib.import_module(CONVERTERS[rest[0]]).main(rest[1:])
    if cmd == "eval":
        if not rest or rest[0] not in EVALS:
            print(f"usage: verl-ext eval {{{','.join(EVALS)}}} [overrides...]")
            return 2
        return importlib.import_module(EVALS[rest[0]]).main(rest[1:])
    if cmd not in COMMANDS:
        print(f"unknown command {cmd!r}\n{__doc__}")
        return 2
    return importlib.import_module(COMMANDS[cmd]).main(rest)


if __name__ == "__main__":
    sys.exit(main())
