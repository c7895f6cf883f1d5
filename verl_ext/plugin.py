"""Installs made before the plugin moved to ``verl_ext.seam.plugin`` still name this module in their
``verl.plugins`` entry point; importing it loads the plugin. Reinstall (pip install -e .) to drop it."""
from verl_ext.seam.plugin import *  # noqa: F401,F403
