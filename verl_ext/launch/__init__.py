"""The launch path: the train/check/prepare/submit/export commands, preflight and the plan, the launcher (torchrun, Ray)."""
