"""``verl-ext check key=value ...`` — run preflight and print the plan; exit 2 on any problem."""
from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from verl_ext.launch.train import make_parser

    parser = make_parser()
    parser.prog = "verl-ext check"
    parser.description = "Preflight only: every config/data problem at once, and the training plan."
    args = parser.parse_args(argv)
    from verl_ext.launch.launcher import nproc_of
    from verl_ext.launch.preflight import check

    report = check(args.overrides, nproc=nproc_of(args.overrides))
    print(report.render())
    return 0 if report.ok else 2


if __name__ == "__main__":
    sys.exit(main())
