"""The training loop: resumable to the batch, mixed precision, DDP-aware, robust to bad steps.

:class:`Trainer` is independent of HFL-Net: it trains any ``torch.nn.Module`` with a
``step_fn(model, batch) -> {"total": loss, other terms...}``. ``hfl_lite.training.cli`` plugs in
HFL-Net and its losses; the tests plug in a tiny stand-in network.

What it guarantees
- **Exact resume.** The order of samples in epoch ``e`` is a fixed permutation seeded by
  ``seed + e`` (``DistributedSampler``'s rule, also for one process). A checkpoint records the
  epoch, how many batches of it are done, the global step, the model, optimiser, scheduler and
  gradient-scaler states and every process's random generator states, so ``resume=True``
  continues with the very next batch and, with deterministic kernels, the same numbers as a run
  that never stopped. Datasets with a ``set_epoch(epoch)`` method are told the epoch, so that
  ``hfl_lite.data`` readers built with a ``seed`` draw each sample's augmentation from
  ``(seed, epoch, index)`` and a resumed run sees the same augmentations, with or without
  ``DataLoader`` workers. (Augmentation that draws from the global generators is reproduced
  only with ``workers=0``.)
- **Atomic checkpoints** (:mod:`hfl_lite.training.checkpoint`): ``last.pt`` after every epoch,
  at ``max_steps``, on Ctrl-C/SIGTERM and at the end; ``best.pt`` when the evaluation metric
  named ``best_metric`` improves.
- **Bad steps are skipped.** A non-finite loss on any process skips the update everywhere (and
  undoes that forward pass's update of the BatchNorm running statistics) and is logged; ``max_nonfinite`` such steps in a row raise :class:`NonFiniteLossError`.
- **Interruptions.** The first Ctrl-C (SIGINT) or SIGTERM finishes the current step, saves
  ``last.pt`` and returns with status ``"interrupted"``; a second one aborts at once.
- **Logs.** One JSON object per line in ``out_dir/log.jsonl`` (every step, every evaluation,
  every event) and the training steps also in ``out_dir/log.csv``.
- **One run per folder** (:mod:`hfl_lite.training.run_folder`). ``fit`` refuses a folder that
  holds a run unless ``resume`` or ``overwrite``, and one that another live run has locked; a
  resume cuts the logs back to the checkpoint's step, so steps trained again after a hard kill
  are logged once; a ``last.pt`` that is missing or unreadable, or that holds another preset or
  other variants (``meta`` entries ``preset`` and ``model_config``), stops with one sentence.
"""
from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import random
import signal
import threading
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm.auto import tqdm

from hfl_lite.errors import UserError

from .checkpoint import (check_same_network, describe_network, load_weights_into, rng_state, save_checkpoint,
                         set_rng_state)
from .distributed import DistInfo, all_gather_objects, barrier
from .run_folder import RunFolder, RunFolderError, truncate_logs

__all__ = [
    "NonFiniteLossError",
    "ResumableSampler",
    "TrainConfig",
    "Trainer",
    "autocast_dtype",
    "configure_determinism",
    "move_to_device",
    "seed_everything",
    "stop_signals_handled_by",
]

StepFn = Callable[[torch.nn.Module, dict[str, Any]], Mapping[str, torch.Tensor]]
EvalFn = Callable[[torch.nn.Module], Mapping[str, float]]


class NonFiniteLossError(RuntimeError):
    """Raised when the loss was NaN or infinite for ``max_nonfinite`` steps in a row."""


@dataclass
class TrainConfig:
    """Settings of one training run.

    out_dir:         folder for ``last.pt``, ``best.pt``, ``log.jsonl``, ``log.csv``
    epochs:          number of epochs; ``max_steps`` (global, counted over resumes) stops earlier
    batch_size:      samples per step and per process
    lr, weight_decay:            Adam settings
    lr_step_epochs, lr_gamma:    StepLR: multiply the learning rate by gamma every this many epochs
    seed:            seeds the per-epoch shuffling (``seed + epoch``) and the generators
    workers:         ``DataLoader`` worker processes
    amp:             autocast (bfloat16 where the GPU supports it, else float16 with a gradient
                     scaler); ``None`` means on for CUDA and off for the CPU
    deterministic:   deterministic kernels (see :func:`configure_determinism`)
    channels_last:   keep the 4D (convolution) weights in channels-last (NHWC) memory order, which
                     oneDNN on the CPU and cuDNN's tensor-core kernels run faster (``bench`` measures
                     it side by side); results are the same up to float rounding
    eval_every:      evaluate every this many epochs (0: never; needs an ``eval_fn``)
    best_metric, best_mode:  the evaluation metric that picks ``best.pt`` and "min" or "max"
    max_nonfinite:   this many non-finite losses in a row stop the run
    progress:        show a tqdm progress bar (rank 0 only)
    meta:            extra primitive values stored in every checkpoint (preset, dataset, ...)
    trainable:       names of submodules (e.g. ``"hand_decoder"``) to train; the rest of the
                     network is frozen: no gradients, and its normalisation layers keep their
                     running statistics (evaluation mode). Empty: the whole network.
    """

    out_dir: str
    epochs: int
    batch_size: int
    lr: float = 1e-4
    weight_decay: float = 5e-4
    lr_step_epochs: int = 10
    lr_gamma: float = 0.7
    seed: int = 0
    workers: int = 0
    amp: bool | None = None
    deterministic: bool = False
    channels_last: bool = True
    max_steps: int | None = None
    eval_every: int = 0
    best_metric: str | None = None
    best_mode: str = "min"
    max_nonfinite: int = 20
    progress: bool = True
    meta: dict[str, Any] = field(default_factory=dict)
    trainable: tuple[str, ...] = ()

    def __post_init__(self):
        for name in ("epochs", "batch_size", "lr_step_epochs", "max_nonfinite"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.max_steps is not None and self.max_steps < 0:
            raise ValueError(f"TrainConfig.max_steps must be >= 0, got {self.max_steps}")
        if self.best_mode not in {"min", "max"}:
            raise ValueError(f"TrainConfig.best_mode must be 'min' or 'max', got {self.best_mode!r}")


class UnknownSubmoduleError(UserError, ValueError):
    """``trainable`` (``train --trainable``) names no submodule of the network."""


def _in_modules(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def freeze_all_but(model: torch.nn.Module, trainable: tuple[str, ...]) -> list[torch.nn.Parameter]:
    """Turn off the gradients of every parameter outside the submodules named in ``trainable``;
    returns the parameters left to train. Raises ``ValueError`` naming an entry that is no
    submodule of ``model`` (:class:`UnknownSubmoduleError`). Empty ``trainable``: everything trains."""
    if not trainable:
        return list(model.parameters())
    names = dict(model.named_modules())
    unknown = [p for p in trainable if p not in names]
    if unknown:
        top = sorted(n for n in names if n and "." not in n)
        raise UnknownSubmoduleError(f"--trainable: no submodule {unknown} in the network; its top-level modules: "
                                    f"{top} (a dotted name such as hand_decoder.encoder also works)")
    for name, param in model.named_parameters():
        param.requires_grad_(_in_modules(name, trainable))
    return [p for p in model.parameters() if p.requires_grad]


def train_mode(model: torch.nn.Module, trainable: tuple[str, ...] = ()) -> None:
    """``model.train()``, except that the leaf modules outside ``trainable`` stay in evaluation
    mode: a frozen part's BatchNorm keeps the running statistics it was trained with."""
    model.train()
    if trainable:
        for name, module in model.named_modules():
            if not any(True for _ in module.children()) and not _in_modules(name, trainable):
                module.eval()


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's (CPU and CUDA) generators with ``seed``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def configure_determinism(enabled: bool) -> None:
    """Ask PyTorch for deterministic kernels (cuDNN deterministic, no benchmark autotuning,
    ``torch.use_deterministic_algorithms`` with warnings for ops that have no deterministic
    version) or restore the fast defaults."""
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.deterministic = enabled
    torch.backends.cudnn.benchmark = not enabled
    torch.use_deterministic_algorithms(enabled, warn_only=True)


def autocast_dtype(device: torch.device, amp: bool | None = None) -> torch.dtype | None:
    """The mixed-precision dtype training uses on ``device`` (see ``TrainConfig.amp``): ``None``
    (float32) when ``amp`` is False, or None on a device other than CUDA; on CUDA bfloat16 where
    the GPU supports it, else float16; on other devices bfloat16."""
    if not (amp if amp is not None else device.type == "cuda"):
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16


def move_to_device(batch: Any, device: torch.device) -> Any:
    """Copy every tensor in a (nested) batch to ``device``; other values are returned unchanged."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: move_to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to_device(v, device) for v in batch)
    return batch


class ResumableSampler(DistributedSampler):
    """``DistributedSampler`` (per-epoch permutation seeded by ``seed + epoch``, one shard per
    process) that can start part-way into its shard: ``set_start(n)`` skips the first ``n``
    indices this process would have drawn in the current epoch."""

    def __init__(self, dataset: Dataset, num_replicas: int = 1, rank: int = 0, shuffle: bool = True, seed: int = 0):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=False)
        self.start = 0

    def set_start(self, n: int) -> None:
        """Skip the first ``n`` indices of this epoch's shard."""
        if not 0 <= n <= self.num_samples:
            raise ValueError(f"ResumableSampler.set_start: n must be in [0, {self.num_samples}], got {n}")
        self.start = n

    def __iter__(self):
        return iter(list(super().__iter__())[self.start:])

    def __len__(self) -> int:
        return self.num_samples - self.start


@contextlib.contextmanager
def stop_signals_handled_by(handler: Callable[[int, Any], None]):
    """Route Ctrl-C (SIGINT) and SIGTERM to ``handler(signum, frame)`` inside the block and put the
    previous handlers back after it. Only the main thread may install handlers; elsewhere the
    block runs unchanged."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


class Trainer:
    """Train ``model`` on ``train_set`` with ``step_fn`` (see the module docstring).

    model:      the network (moved to ``dist.device``; wrapped in DDP when ``dist`` has >1 process)
    step_fn:    ``step_fn(model, batch)`` -> dict of scalar tensors with the key ``"total"``
                (the loss that is minimised); the other entries are logged. The batch arrives
                on the device. Called under autocast when AMP is on.
    train_set:  a map-style Dataset whose items the default collate can batch
    config:     :class:`TrainConfig`
    eval_fn:    ``eval_fn(model) -> {metric: float}`` run on rank 0 every ``config.eval_every``
                epochs, the model in eval mode (the unwrapped module)
    dist:       :class:`~hfl_lite.training.distributed.DistInfo` (default: one process on the CPU)
    find_unused_parameters: passed to DistributedDataParallel (needed when some parameters get
                no gradient, e.g. ablation variants that bypass a module)
    """

    def __init__(
        self,
        model: torch.nn.Module,
        step_fn: StepFn,
        train_set: Dataset,
        config: TrainConfig,
        eval_fn: EvalFn | None = None,
        dist: DistInfo | None = None,
        find_unused_parameters: bool = False,
    ):
        self.cfg = config
        self.dist = dist or DistInfo()
        self.device = self.dist.device
        self.step_fn = step_fn
        self.eval_fn = eval_fn
        self.train_set = train_set
        self.out_dir = Path(config.out_dir)
        if self.dist.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        configure_determinism(config.deterministic)

        layout = torch.channels_last if config.channels_last else torch.contiguous_format
        model = model.to(self.device, memory_format=layout)
        if self.dist.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            model = DistributedDataParallel(model, device_ids=ids, find_unused_parameters=find_unused_parameters)
        self.model = model
        self._norm_buffers = [
            buf
            for module in _unwrap(model).modules()
            if isinstance(module, torch.nn.modules.batchnorm._NormBase)
            for buf in module.buffers(recurse=False)
        ]
        params = freeze_all_but(_unwrap(model), tuple(config.trainable))
        self.optimizer = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, step_size=config.lr_step_epochs, gamma=config.lr_gamma)

        self.amp_dtype = autocast_dtype(self.device, config.amp)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)

        self.sampler = ResumableSampler(
            train_set, num_replicas=self.dist.world_size, rank=self.dist.rank, shuffle=True, seed=config.seed
        )
        self.batches_per_epoch = self.sampler.num_samples // config.batch_size
        if self.batches_per_epoch == 0:
            raise ValueError(
                f"batch_size {config.batch_size} x {self.dist.world_size} process(es) is larger than the "
                f"training set ({len(train_set)} samples): no full batch per epoch"
            )

        # position in training
        self.epoch = 0
        self.batch_in_epoch = 0
        self.step = 0  # batches consumed (updates + skipped ones)
        self.updates = 0
        self.nonfinite_streak = 0
        self.best_value: float | None = None
        self._stop_signal: int | None = None
        self._csv_fields: list[str] | None = None
        self._folder: RunFolder | None = None

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly here (tensors and primitive containers only)."""
        return {
            "format": 1,
            "model": _unwrap(self.model).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": all_gather_objects(rng_state(), self.dist),
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "step": self.step,
            "updates": self.updates,
            "nonfinite_streak": self.nonfinite_streak,
            "best_value": self.best_value,
            "world_size": self.dist.world_size,
            "batch_size": self.cfg.batch_size,
            "seed": self.cfg.seed,
            **{k: v for k, v in self.cfg.meta.items()},
        }

    def load_state_dict(self, ckpt: Mapping[str, Any], source: str | os.PathLike = "checkpoint") -> None:
        """Restore a checkpoint made by :meth:`state_dict` (same world size and batch size expected
        for an exact continuation; other values continue approximately, with a warning).
        ``source``: the file it came from, named if its weights do not fit the model."""
        network = describe_network(self.cfg.meta.get("preset"), self.cfg.meta.get("model_config"))
        load_weights_into(_unwrap(self.model), ckpt["model"], source, network)
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.epoch = int(ckpt["epoch"])
        self.step = int(ckpt["step"])
        self.updates = int(ckpt["updates"])
        self.nonfinite_streak = int(ckpt["nonfinite_streak"])
        self.best_value = ckpt["best_value"]
        same_layout = ckpt["world_size"] == self.dist.world_size and ckpt["batch_size"] == self.cfg.batch_size
        if same_layout:
            self.batch_in_epoch = int(ckpt["batch_in_epoch"])
            set_rng_state(ckpt["rng"][self.dist.rank])
        else:
            self.batch_in_epoch = 0
            set_rng_state(ckpt["rng"][0])
            self._log_event(
                "resume_layout_changed",
                message=(
                    f"checkpoint was made with {ckpt['world_size']} process(es) x batch {ckpt['batch_size']}, now "
                    f"{self.dist.world_size} x {self.cfg.batch_size}: restarting epoch {self.epoch} from its start"
                ),
            )
        if self.batch_in_epoch > self.batches_per_epoch:
            raise ValueError(
                f"checkpoint position (batch {self.batch_in_epoch} of epoch {self.epoch}) lies beyond this "
                f"training set's {self.batches_per_epoch} batches per epoch: was it made on another dataset?"
            )

    def save(self, name: str = "last.pt") -> Path | None:
        """Write the checkpoint ``out_dir/name`` (rank 0 writes; every rank must call this)."""
        state = self.state_dict()  # collective: gathers every rank's generator states
        path = None
        if self.dist.is_main:
            path = save_checkpoint(state, self.out_dir / name)
            if name == "last.pt" and self._folder is not None:
                self._folder.checkpoint_written()
        barrier(self.dist)
        return path

    # ------------------------------------------------------------------ logging
    def _write_log(self, record: dict[str, Any]) -> None:
        if not self.dist.is_main:
            return
        with open(self.out_dir / "log.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def _write_csv(self, record: dict[str, Any]) -> None:
        if not self.dist.is_main:
            return
        path = self.out_dir / "log.csv"
        if self._csv_fields is None:
            if path.is_file() and path.stat().st_size > 0:
                with open(path, newline="", encoding="utf-8") as f:
                    self._csv_fields = next(csv.reader(f))
            else:
                self._csv_fields = list(record)
                with open(path, "w", newline="", encoding="utf-8") as f:
                    csv.writer(f).writerow(self._csv_fields)
        with open(path, "a", newline="", encoding="utf-8") as f:
            csv.DictWriter(f, fieldnames=self._csv_fields, extrasaction="ignore").writerow(record)

    def _log_event(self, event: str, **fields: Any) -> None:
        self._write_log({"event": event, "epoch": self.epoch, "step": self.step, "time": time.time(), **fields})

    # ------------------------------------------------------------------ signals
    def _handle_signal(self, signum, frame) -> None:
        if self._stop_signal is not None:
            raise KeyboardInterrupt
        self._stop_signal = signum
        if self.dist.is_main:
            print(f"\n[hfl_lite] {signal.Signals(signum).name}: finishing this step, saving last.pt and stopping "
                  "(send it again to abort without saving)", flush=True)

    # ------------------------------------------------------------------ one step
    def _agree(self, finite: bool) -> tuple[bool, bool]:
        """(loss finite on every rank, some rank asked to stop), in one all-reduce."""
        flags = torch.tensor([1 if finite else 0, 1 if self._stop_signal is None else 0], dtype=torch.int32)
        if self.dist.distributed:
            flags = flags.to(self.device)
            torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MIN)
        finite_all, none_stopping = (bool(v) for v in flags.tolist())
        return finite_all, not none_stopping

    def _train_step(self, batch: dict[str, Any]) -> tuple[dict[str, float], bool, bool]:
        """Forward, backward and update for one batch; returns (logged terms, updated, stop)."""
        batch = move_to_device(batch, self.device)
        self.optimizer.zero_grad(set_to_none=True)
        norm_stats = [(b, b.clone()) for b in self._norm_buffers]
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            terms = self.step_fn(self.model, batch)
        if "total" not in terms:
            raise KeyError(f"step_fn must return a dict with the key 'total'; got keys {sorted(terms)}")
        total = terms["total"]
        finite, stop = self._agree(bool(torch.isfinite(total.detach()).all().item()))
        if finite:
            self.scaler.scale(total).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:  # the forward pass already folded the bad batch into the normalisation statistics
            with torch.no_grad():
                for buf, saved in norm_stats:
                    buf.copy_(saved)
        values = torch.stack([v.detach().float().reshape(()) for v in terms.values()]).tolist()
        return dict(zip(terms.keys(), values)), finite, stop

    # ------------------------------------------------------------------ the loop
    def _make_loader(self) -> DataLoader:
        self.sampler.set_epoch(self.epoch)
        set_epoch = getattr(self.train_set, "set_epoch", None)
        if callable(set_epoch):  # datasets that seed their augmentation per (seed, epoch, index)
            set_epoch(self.epoch)
        self.sampler.set_start(self.batch_in_epoch * self.cfg.batch_size)
        # A private generator: creating the loader must not draw from the global torch generator
        # (that would make a resumed run differ), and worker seeds depend only on the position.
        gen = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + self.epoch * 10_007 + self.batch_in_epoch)
        return DataLoader(
            self.train_set,
            batch_size=self.cfg.batch_size,
            sampler=self.sampler,
            num_workers=self.cfg.workers,
            drop_last=True,
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
            generator=gen,
        )

    def _evaluate(self) -> dict[str, float] | None:
        metrics = None
        if self.dist.is_main and self.eval_fn is not None:
            module = _unwrap(self.model)
            module.eval()
            with torch.no_grad():
                metrics = {k: float(v) for k, v in self.eval_fn(module).items()}
            train_mode(module, tuple(self.cfg.trainable))
            self._log_event("eval", **metrics)
        improved = False
        if metrics is not None and self.cfg.best_metric is not None:
            if self.cfg.best_metric not in metrics:
                raise KeyError(f"best_metric {self.cfg.best_metric!r} is not among the evaluation metrics {sorted(metrics)}")
            value = metrics[self.cfg.best_metric]
            better = self.best_value is None or (
                value < self.best_value if self.cfg.best_mode == "min" else value > self.best_value
            )
            if math.isfinite(value) and better:
                self.best_value = value
                improved = True
        flag = all_gather_objects(improved, self.dist)[0]
        if flag:
            self.save("best.pt")
        return metrics

    def fit(self, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
        """Train until ``epochs`` or ``max_steps``; returns a summary dict with ``status``
        ("completed", "max_steps" or "interrupted"), ``epoch``, ``step``, ``updates`` and the last
        evaluation (``metrics``, or ``None``).

        resume: continue from ``out_dir/last.pt`` (a folder with no trace of a run starts fresh).
        overwrite: start a new run in a folder that holds one (see
        :mod:`hfl_lite.training.run_folder`; without either flag such a folder is refused).
        Raises :class:`NonFiniteLossError` after ``max_nonfinite`` non-finite losses in a row, and
        :class:`~hfl_lite.training.run_folder.RunFolderError` or
        :class:`~hfl_lite.training.checkpoint.CheckpointError` when the folder cannot be used.
        """
        try:
            self._start_or_resume(resume, overwrite)
            return self._fit()
        finally:
            if self._folder is not None:
                self._folder.release()
                self._folder = None

    def _start_or_resume(self, resume: bool, overwrite: bool) -> None:
        """Rank 0 claims the run folder (a refusal reaches every rank, so that none is left waiting
        for the others); when resuming every rank loads ``last.pt`` and rank 0 cuts the logs back."""
        folder = RunFolder(self.out_dir, resume=resume, overwrite=overwrite)
        refusal = None
        if self.dist.is_main:
            try:
                folder.claim()
            except Exception as err:
                refusal = err
        first = all_gather_objects(None if refusal is None else str(refusal), self.dist)[0]
        if refusal is not None:
            raise refusal
        if first is not None:
            raise RunFolderError(f"rank 0 could not claim {self.out_dir}: {first}")
        self._folder = folder if self.dist.is_main else None
        ckpt = folder.resume_checkpoint(map_location=self.device)
        if ckpt is None:
            self._log_event("start", config={k: v for k, v in asdict(self.cfg).items() if k != "meta"}, **self.cfg.meta)
            return
        last = self.out_dir / "last.pt"
        if "preset" in self.cfg.meta:
            check_same_network(last, ckpt, self.cfg.meta["preset"], self.cfg.meta.get("model_config") or {},
                               "--resume:")
        self.load_state_dict(ckpt, source=last)
        if self.dist.is_main:  # steps after the checkpoint are trained again: they must not be logged twice
            truncate_logs(self.out_dir, int(ckpt["step"]))
        self._log_event("resume", batch_in_epoch=self.batch_in_epoch)

    def _fit(self) -> dict[str, Any]:
        last = self.out_dir / "last.pt"
        self.model.train()  # a DistributedDataParallel wrapper's own flag too
        train_mode(_unwrap(self.model), tuple(self.cfg.trainable))
        status, metrics = "completed", None
        with stop_signals_handled_by(self._handle_signal):
            while self.epoch < self.cfg.epochs and status == "completed":
                status = self._run_epoch()
                if status != "completed":
                    break
                with warnings.catch_warnings():
                    # after a resume at an epoch's end no optimiser step has run in this process yet
                    warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)` before")
                    self.scheduler.step()
                self.epoch += 1
                self.batch_in_epoch = 0
                if self.cfg.eval_every and self.epoch % self.cfg.eval_every == 0:
                    metrics = self._evaluate()
                self.save("last.pt")
            if status != "completed" or not last.is_file():
                self.save("last.pt")
        self._log_event("end", status=status)
        return {"status": status, "epoch": self.epoch, "step": self.step, "updates": self.updates, "metrics": metrics}

    def _run_epoch(self) -> str:
        loader = self._make_loader()
        bar = tqdm(
            total=self.batches_per_epoch,
            initial=self.batch_in_epoch,
            desc=f"epoch {self.epoch + 1}/{self.cfg.epochs}",
            disable=not (self.cfg.progress and self.dist.is_main),
            dynamic_ncols=True,
        )
        try:
            batches = iter(loader)
            while True:
                # check before fetching: fetching may draw random numbers (augmentation) that a
                # checkpoint taken here must not have consumed
                if self.cfg.max_steps is not None and self.step >= self.cfg.max_steps:
                    return "max_steps" if self.batch_in_epoch < self.batches_per_epoch else "completed"
                if self._stop_signal is not None and not self.dist.distributed:
                    # a signal that came after this step's check: stop before fetching (a terminal's
                    # Ctrl-C has also ended the DataLoader workers); with several processes the
                    # check inside the step keeps every rank in step
                    return "interrupted"
                try:
                    batch = next(batches)
                except StopIteration:
                    return "completed"
                t0 = time.perf_counter()
                terms, updated, stop = self._train_step(batch)
                self.step += 1
                self.batch_in_epoch += 1
                record = {
                    "epoch": self.epoch,
                    "step": self.step,
                    "batch": self.batch_in_epoch,
                    "lr": self.optimizer.param_groups[0]["lr"],
                    "updated": updated,
                    **terms,
                    "seconds": time.perf_counter() - t0,
                    "time": time.time(),
                }
                if updated:
                    self.updates += 1
                    self.nonfinite_streak = 0
                    self._write_log(record)
                    self._write_csv(record)
                    bar.set_postfix(loss=f"{terms['total']:.4g}")
                else:
                    self.nonfinite_streak += 1
                    ids = batch.get("sample_id") if isinstance(batch, Mapping) else None
                    self._write_log({**record, "event": "nonfinite_loss", "sample_ids": ids})
                    if self.nonfinite_streak >= self.cfg.max_nonfinite:
                        raise NonFiniteLossError(
                            f"the loss was NaN or infinite for {self.nonfinite_streak} steps in a row (epoch "
                            f"{self.epoch + 1}, step {self.step}); those updates were skipped and training stops. "
                            "Check the data (see 'nonfinite_loss' events in log.jsonl), lower the learning rate "
                            "or turn off --amp."
                        )
                bar.update(1)
                if stop:
                    return "interrupted"
        finally:
            bar.close()
