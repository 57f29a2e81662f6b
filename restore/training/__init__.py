"""Training shared by every model: one loop, one config base, one checkpoint format, the sampler-path targets.

    config (frozen, from YAML) -> start_run (network, EMA, optimiser, resume) -> train:
        examples(step) -> x0_hat = net(x_t, t, cond) -> weighted MSE -> Adam step + EMA
        -> validate / export the EMA weights / checkpoint, until max_steps or the time budget

A model adds only its data (``examples``) and its network config: :mod:`restore.mri.train`,
:mod:`restore.audio.train`, :mod:`restore.audio.train_inpaint`.
"""

from restore.training.config import TrainingConfig, load_config
from restore.training.loop import Example, Run, learning_rate, start_run, train

__all__ = ["Example", "Run", "TrainingConfig", "learning_rate", "load_config", "start_run", "train"]
