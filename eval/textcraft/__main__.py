"""``python -m eval.textcraft key=value ...``: see ``eval.textcraft.run``."""
import sys

from .run import main

sys.exit(main())
