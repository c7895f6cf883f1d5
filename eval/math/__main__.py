"""``python -m eval.math key=value ...``: run a math evaluation (``eval.math.run``)."""
import sys

from eval.math.run import main

sys.exit(main())
