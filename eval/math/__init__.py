"""Math evaluation: answer extraction (``extract`` holds the order; ``boxes``, ``prose``, ``spans`` read
boxes, answer statements and LaTeX in prose), cheap comparison (``normalize``, ``forms``,
``relations``), grading with a hard time bound (``grading``, ``pool``, ``verifier``),
metrics (``metrics``), the bundled offline benchmark (``bundled``) and the runner (``run``,
``python -m verl_ext_eval.math``)."""
