"""verl's SFT trainers (torchrun and Ray) with verl-ext's stages, resume fix and evaluator hook; config/ is their Hydra config."""
