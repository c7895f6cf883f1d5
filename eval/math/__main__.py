"""``python -m verl_ext_eval.math key=value ...``: run a math evaluation (``verl_ext_eval.math.run``)."""
import sys

from verl_ext_eval.math.run import main

sys.exit(main())
