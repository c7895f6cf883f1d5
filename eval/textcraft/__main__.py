"""``python -m verl_ext_eval.textcraft key=value ...``: see ``verl_ext_eval.textcraft.run``."""
import sys

from .run import main

sys.exit(main())
