"""The applications on top: the only verl-ext modules that join the training core (``verl_ext``)
with evaluation (``verl_ext_eval``) and the converters (``data_converters``). Nothing below imports
them; the trainer reaches generation eval through the ``gen_eval.evaluator`` dotted path.

- ``cli``: the ``verl-ext`` command (train, check, convert, eval, export, submit, demo)
- ``demo``: the CPU demo (data, eval before, SFT, eval after)
- ``gen_eval``: generation evaluation at validation steps (``gen_eval.enable=true``)
"""
