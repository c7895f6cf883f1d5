"""TextCraft (ADaPT's Minecraft crafting game): game, expert, formats, runner, verl agent loop.

``recipes`` (immutable recipe book) -> ``env`` (tasks + exact game strings) -> ``expert`` (solves
a task from its observation) -> ``formats`` (agentgym / adapt turns: write and parse) -> ``agent``
(one episode over a ``Backend``) -> ``run`` (``python -m verl_ext_eval.textcraft``, resumable) and ``data``
(expert trajectories -> Parquet); ``verl_agent_loop`` plays the same game inside verl RL rollouts.
"""
