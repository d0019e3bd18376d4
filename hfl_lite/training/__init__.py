"""Training HFL-Net: the resumable loop, checkpoints, multi-process (torchrun) support and the
``train``/``eval`` commands (:mod:`hfl_lite.training.cli`)."""
from .checkpoint import export_weights, load_checkpoint, load_model_weights, rng_state, save_checkpoint, set_rng_state
from .distributed import DistInfo, cleanup_distributed, init_distributed
from .loop import NonFiniteLossError, ResumableSampler, TrainConfig, Trainer, configure_determinism, seed_everything

__all__ = [
    "DistInfo",
    "NonFiniteLossError",
    "ResumableSampler",
    "TrainConfig",
    "Trainer",
    "cleanup_distributed",
    "configure_determinism",
    "export_weights",
    "init_distributed",
    "load_checkpoint",
    "load_model_weights",
    "rng_state",
    "save_checkpoint",
    "seed_everything",
    "set_rng_state",
]
