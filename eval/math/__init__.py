"""Math evaluation: answer extraction (``extract``), grading with a hard time bound (``grading``),
metrics (``metrics``), the bundled offline benchmark (``bundled``) and the runner (``run``,
``python -m verl_ext_eval.math``)."""
