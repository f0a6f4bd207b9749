"""Training: the config schema, optimizers and LR schedulers, losses, data, checkpoints, the loop."""
