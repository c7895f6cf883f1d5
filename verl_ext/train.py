"""``python -m verl_ext.train ...`` = ``verl-ext train ...`` (the command lives in ``verl_ext.launch.train``)."""
import sys

from verl_ext.launch.train import main

if __name__ == "__main__":
    sys.exit(main())
