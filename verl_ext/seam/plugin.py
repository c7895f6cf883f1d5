"""The one module verl imports (``verl.plugins`` entry point, loaded by ``import verl``).

Registers the CPU platform with verl's ``PlatformRegistry`` (auto-detected only when no accelerator
is present) and applies ``verl_ext.seam.patches``. verl logs plugin failures at DEBUG and carries on, so
``verl_ext.launch.preflight`` checks ``LOADED`` and says so loudly if this module did not load.
"""
from __future__ import annotations

from verl_ext.seam import cpu_platform, patches

CPU = not cpu_platform.accelerator_present()
APPLIED = patches.apply(cpu=CPU)
LOADED = True
