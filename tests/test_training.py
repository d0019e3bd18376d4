"""The training loop: exact resume, atomic checkpoints, skipped non-finite steps, signals, DDP,
and a few real HFL-Net steps on the synthetic samples."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from hfl_lite.training import NonFiniteLossError, TrainConfig, Trainer, load_checkpoint, save_checkpoint, seed_everything
from hfl_lite.mano import StandinAssetWarning
from hfl_lite.samples import samples_root, shipped_checkpoint
from hfl_lite.training import checkpoint as checkpoint_module


@pytest.fixture(autouse=True)
def _restore_global_torch_flags():
    """The trainer switches deterministic kernels on or off for the process: undo it after each test."""
    state = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    yield
    torch.use_deterministic_algorithms(state[0], warn_only=state[1])
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = state[2], state[3]


class TinySet(torch.utils.data.Dataset):
    """A regression set whose items draw fresh noise from the global torch generator (like a
    random augmentation does), so that resuming must restore the generator states too."""

    def __init__(self, n: int = 24, nan_at: set[int] = frozenset()):
        g = torch.Generator().manual_seed(123)
        self.x = torch.randn(n, 8, generator=g)
        self.y = self.x @ torch.randn(8, 3, generator=g)
        self.nan_at = set(nan_at)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        x = self.x[i] + 0.05 * torch.randn(8)
        if i in self.nan_at:
            x = torch.full_like(x, float("nan"))
        return {"x": x, "y": self.y[i], "sample_id": f"tiny/{i:04d}"}


def tiny_model() -> nn.Module:
    """Linear + BatchNorm (buffers) + Dropout (draws random numbers) + Linear."""
    return nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))


def tiny_step(model, batch):
    mse = ((model(batch["x"]) - batch["y"]) ** 2).mean()
    return {"total": mse, "mse": mse}


def make_trainer(out, dataset=None, **cfg):
    seed_everything(0)
    settings = dict(out_dir=str(out), epochs=3, batch_size=4, seed=7, deterministic=True, progress=False, lr=1e-2)
    settings.update(cfg)
    return Trainer(tiny_model(), tiny_step, dataset or TinySet(), TrainConfig(**settings))


def read_log(out) -> list[dict]:
    return [json.loads(line) for line in (Path(out) / "log.jsonl").read_text().splitlines()]


def assert_same_weights(a: nn.Module, b: nn.Module, atol=1e-6):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sa[k].float(), sb[k].float(), atol=atol, rtol=0, msg=f"parameter {k} differs")


@pytest.mark.parametrize("stop_at", [3, 6, 8])  # mid-epoch, at an epoch boundary (6 batches/epoch), next epoch
def test_resume_is_exact(tmp_path, stop_at):
    straight = make_trainer(tmp_path / "straight", max_steps=10)
    assert straight.fit()["status"] == "max_steps"

    first = make_trainer(tmp_path / "resumed", max_steps=stop_at)
    assert first.fit()["status"] == "max_steps"
    ckpt = load_checkpoint(tmp_path / "resumed" / "last.pt")
    assert ckpt["step"] == stop_at and ckpt["batch_in_epoch"] == stop_at % 6
    second = make_trainer(tmp_path / "resumed", max_steps=10)  # a fresh process would build a fresh model
    assert second.fit(resume=True)["status"] == "max_steps"

    assert_same_weights(straight.model, second.model)
    assert second.optimizer.state_dict()["state"][0]["step"] == straight.optimizer.state_dict()["state"][0]["step"]
    # the logged losses after the resume point agree with the uninterrupted run's
    def losses(out):
        return {r["step"]: r["total"] for r in read_log(out) if "event" not in r}
    a, b = losses(tmp_path / "straight"), losses(tmp_path / "resumed")
    assert sorted(b) == list(range(1, 11))
    for step in range(stop_at + 1, 11):
        assert a[step] == pytest.approx(b[step], rel=1e-6, abs=1e-7)


def test_checkpoint_holds_only_plain_data_and_restores_generators(tmp_path):
    trainer = make_trainer(tmp_path, max_steps=2)
    trainer.fit()
    ckpt = torch.load(tmp_path / "last.pt", weights_only=True)  # no pickled objects
    assert {"model", "optimizer", "scheduler", "scaler", "rng", "epoch", "step", "batch_in_epoch"} <= set(ckpt)
    rng = ckpt["rng"][0]
    assert rng["python"].dtype == torch.int64 and rng["python"].numel() == 625
    assert rng["numpy"].numel() == 624 and rng["torch"].dtype == torch.uint8

    # restoring the saved generator states replays the same random numbers
    import random

    import numpy as np

    checkpoint_module.set_rng_state(rng)
    first = (random.random(), np.random.rand(), torch.rand(3))
    checkpoint_module.set_rng_state(rng)
    again = (random.random(), np.random.rand(), torch.rand(3))
    assert first[0] == again[0] and first[1] == again[1] and torch.equal(first[2], again[2])


def test_interrupted_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint({"model": {"w": torch.ones(3)}, "step": 1}, path)

    real_save = torch.save

    def torn_save(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        f.truncate(f.tell() // 2)  # half of the bytes reached the disk ...
        raise OSError("disk full")  # ... then the write failed

    monkeypatch.setattr(torch, "save", torn_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint({"model": {"w": torch.zeros(3)}, "step": 2}, path)
    monkeypatch.setattr(torch, "save", real_save)

    ckpt = load_checkpoint(path)
    assert ckpt["step"] == 1 and torch.equal(ckpt["model"]["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"], "the temporary file must be removed"


def test_interrupted_by_kill_keeps_previous_checkpoint(tmp_path):
    """A process killed (SIGKILL) in the middle of writing leaves the old checkpoint intact."""
    path = tmp_path / "last.pt"
    save_checkpoint({"model": {"w": torch.ones(4)}, "step": 1}, path)
    script = textwrap.dedent(f"""
        import os, signal, torch
        from hfl_lite.training.checkpoint import save_checkpoint
        real_save = torch.save
        def dying_save(obj, f, *a, **k):
            real_save(obj, f, *a, **k)
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        torch.save = dying_save
        save_checkpoint({{"model": {{"w": torch.zeros(4)}}, "step": 2}}, {str(path)!r})
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL
    ckpt = load_checkpoint(path)
    assert ckpt["step"] == 1 and torch.equal(ckpt["model"]["w"], torch.ones(4))


def test_nonfinite_batch_is_skipped(tmp_path):
    # 24 samples, batches of 4, two epochs: sample 5's batch is bad once per epoch
    data = TinySet(n=24, nan_at={5})
    trainer = make_trainer(tmp_path, dataset=data, epochs=2, batch_size=4)
    result = trainer.fit()
    assert result["status"] == "completed" and result["step"] == 12 and result["updates"] == 10
    events = [r for r in read_log(tmp_path) if r.get("event") == "nonfinite_loss"]
    assert len(events) == 2 and all("tiny/0005" in e["sample_ids"] for e in events)
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_nonfinite_streak_stops_the_run(tmp_path):
    data = TinySet(n=24, nan_at=set(range(24)))
    trainer = make_trainer(tmp_path, dataset=data, max_nonfinite=3)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    with pytest.raises(NonFiniteLossError, match="3 steps in a row"):
        trainer.fit()
    after = trainer.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "skipped steps must not change weights or BN statistics"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_outside_the_training_loop_exits_with_one_line(sig):
    """While `train` sets up (e.g. fills --cache) a signal ends it with a message, not silently
    (SIGTERM's default) or with a traceback (Ctrl-C's); the previous handlers come back after."""
    from hfl_lite.training.cli import stop_cleanly_outside_training

    before = signal.getsignal(sig)
    with pytest.raises(SystemExit, match=f"stopped by {sig.name} outside the training loop"):
        with stop_cleanly_outside_training():
            os.kill(os.getpid(), sig)
            for _ in range(100):  # the handler runs at the next bytecode boundary of this thread
                time.sleep(0.01)
    assert signal.getsignal(sig) is before


@pytest.mark.parametrize("signal_at", [4, 6])  # mid-epoch; on the last batch of the epoch (6 per epoch)
def test_sigterm_saves_and_resume_continues(tmp_path, signal_at):
    calls = {"n": 0}

    def step_then_signal(model, batch):
        calls["n"] += 1
        if calls["n"] == signal_at:
            os.kill(os.getpid(), signal.SIGTERM)  # arrives mid-step; the step still completes
        return tiny_step(model, batch)

    seed_everything(0)
    cfg = TrainConfig(out_dir=str(tmp_path / "run"), epochs=2, batch_size=4, seed=7, deterministic=True, progress=False, lr=1e-2)
    trainer = Trainer(tiny_model(), step_then_signal, TinySet(), cfg)
    result = trainer.fit()
    assert result["status"] == "interrupted" and result["step"] == signal_at
    assert load_checkpoint(tmp_path / "run" / "last.pt")["step"] == signal_at
    assert signal.getsignal(signal.SIGTERM) is not trainer._handle_signal  # handlers restored

    straight = make_trainer(tmp_path / "straight", epochs=2)
    straight.fit()
    resumed = make_trainer(tmp_path / "run", epochs=2)
    assert resumed.fit(resume=True)["status"] == "completed"
    assert_same_weights(straight.model, resumed.model)


def test_evaluation_and_best_checkpoint(tmp_path):
    values = iter([3.0, 1.0, 2.0])

    def fake_eval(model):
        assert not model.training
        return {"score": next(values)}

    seed_everything(0)
    cfg = TrainConfig(out_dir=str(tmp_path), epochs=3, batch_size=4, progress=False, eval_every=1, best_metric="score")
    Trainer(tiny_model(), tiny_step, TinySet(), cfg, eval_fn=fake_eval).fit()
    evals = [r for r in read_log(tmp_path) if r.get("event") == "eval"]
    assert [e["score"] for e in evals] == [3.0, 1.0, 2.0]
    assert load_checkpoint(tmp_path / "best.pt")["epoch"] == 2  # written after the second epoch
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 3
    header = (tmp_path / "log.csv").read_text().splitlines()[0].split(",")
    assert {"step", "epoch", "lr", "total", "mse"} <= set(header)


DDP_WORKER = textwrap.dedent("""
    import sys, torch
    from torch import nn
    sys.path.insert(0, sys.argv[2])
    from test_training import TinySet, tiny_model, tiny_step
    from hfl_lite.training import TrainConfig, Trainer, init_distributed, cleanup_distributed, seed_everything
    info = init_distributed("cpu")
    seed_everything(100 + info.rank)  # different initial weights per rank: DDP must broadcast rank 0's
    out = sys.argv[1]
    cfg = TrainConfig(out_dir=out, epochs=1, batch_size=2, max_steps=2, progress=False, lr=1e-2, seed=3)
    trainer = Trainer(tiny_model(), tiny_step, TinySet(n=16), cfg, dist=info)
    result = trainer.fit()
    torch.save({k: v.clone() for k, v in trainer.model.module.state_dict().items()}, f"{out}/rank{info.rank}.pt")
    with open(f"{out}/rank{info.rank}.txt", "w") as f:
        f.write(f"world {info.world_size} {result['status']} {result['step']}")
    cleanup_distributed()
""")


def test_ddp_two_processes_keep_identical_weights(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(DDP_WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(script), str(tmp_path), str(Path(__file__).parent)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for rank in (0, 1):
        assert (tmp_path / f"rank{rank}.txt").read_text() == "world 2 max_steps 2"
    w0, w1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    params = [name for name, _ in tiny_model().named_parameters()]
    for k in params:  # BatchNorm running statistics are per rank until DDP broadcasts rank 0's
        assert torch.equal(w0[k], w1[k]), f"{k} differs between ranks"
    seed_everything(100)
    init = tiny_model().state_dict()
    assert not torch.equal(init["0.weight"], w0["0.weight"]), "the weights did not move"
    ckpt = load_checkpoint(tmp_path / "last.pt")  # written once, by rank 0
    assert ckpt["world_size"] == 2 and len(ckpt["rng"]) == 2 and ckpt["step"] == 2
    torch.testing.assert_close(ckpt["model"]["0.weight"], w0["0.weight"])


# ---------------------------------------------------------------------------------------------
# HFL-Net itself on the synthetic samples
HO3D_ROOT = samples_root() / "ho3d"


def test_a_few_steps_on_synthetic_samples_lower_the_loss():
    from hfl_lite.data import HO3D
    from hfl_lite.model import HFLNet
    from hfl_lite.presets import get_preset
    from hfl_lite.training.cli import HFLStep

    preset = get_preset("cpu")
    seed_everything(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StandinAssetWarning)
        data = HO3D(HO3D_ROOT, "train", preset.image_size, preset.roi_size)
        batch = torch.utils.data.default_collate([data[i] for i in range(6)])
        model = HFLNet(preset)
    step = HFLStep()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def loss_now():
        with torch.no_grad():
            return {k: v.item() for k, v in step(model, batch).items()}

    before = loss_now()
    assert set(before) == {"joints2d", "verts3d", "joints3d", "mano_pose", "mano_shape", "obj_offset", "obj_conf", "total"}
    assert all(math.isfinite(v) and v > 0 for v in before.values())
    for _ in range(20):  # the reference initialisation starts the heads small: a slower first few steps
        optimizer.zero_grad()
        step(model, batch)["total"].backward()
        optimizer.step()
    after = loss_now()
    assert after["total"] < 0.85 * before["total"], (before, after)
    assert after["verts3d"] < 0.7 * before["verts3d"], (before, after)


def test_train_and_eval_commands(tmp_path):
    from hfl_lite.submission import read_submission
    from hfl_lite.training.cli import eval_main, train_main

    run = tmp_path / "run"
    common = ["--dataset", "ho3d", "--root", str(HO3D_ROOT), "--preset", "cpu", "--epochs", "2", "--batch-size", "4",
              "--out", str(run), "--seed", "1", "--deterministic", "--no-progress"]
    assert train_main(common + ["--max-steps", "2"]) == 0
    assert load_checkpoint(run / "last.pt")["step"] == 2
    assert train_main(common + ["--max-steps", "3", "--resume", "--export", str(tmp_path / "small.pt")]) == 0
    ckpt = load_checkpoint(run / "last.pt")
    assert ckpt["step"] == 3 and ckpt["preset"] == "cpu" and ckpt["dataset"] == "ho3d"
    events = [r.get("event") for r in read_log(run)]
    assert events.count("start") == 1 and events.count("resume") == 1
    small = torch.load(tmp_path / "small.pt", weights_only=True)
    assert "optimizer" not in small and all(v.dtype != torch.float32 for v in small["model"].values())

    out = tmp_path / "eval"
    assert eval_main(["--checkpoint", str(tmp_path / "small.pt"), "--dataset", "ho3d", "--root", str(HO3D_ROOT),
                      "--max-samples", "4", "--batch-size", "4", "--out", str(out)]) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["samples"] == 4
    for key in ("mpjpe_mm", "pa_mpjpe_mm", "pa_mpvpe_mm", "f5_pct", "f15_pct", "add_01d_mean_objects_pct",
                "mpjpe_est_trans_mm", "root_error_mm", "root_error_median_mm"):
        assert math.isfinite(report["model"][key]), key
    assert "PA-MPJPE" in (out / "metrics.md").read_text()
    joints, verts = read_submission(out / "pred.zip")
    assert joints.shape == (4, 21, 3) and verts.shape == (4, 778, 3)


def test_cached_training_matches_reading_from_disk(tmp_path):
    """``train --cache`` feeds the network exactly the samples a run reading from disk gets:
    two deterministic steps give the same weights. With augmentation on, --cache is refused."""
    from hfl_lite.training.cli import train_main

    common = ["--dataset", "ho3d", "--root", str(HO3D_ROOT), "--preset", "cpu", "--batch-size", "4", "--max-steps", "2",
              "--seed", "2", "--deterministic", "--no-progress", "--no-augment"]
    assert train_main(common + ["--out", str(tmp_path / "disk")]) == 0
    assert train_main(common + ["--cache", "--workers", "2", "--out", str(tmp_path / "cache")]) == 0
    disk = load_checkpoint(tmp_path / "disk" / "last.pt")["model"]
    cached = load_checkpoint(tmp_path / "cache" / "last.pt")["model"]
    assert disk.keys() == cached.keys()
    assert all(torch.allclose(disk[k], cached[k], atol=1e-6) for k in disk)
    with pytest.raises(SystemExit, match="--cache needs --no-augment"):
        train_main(common[:-1] + ["--cache", "--out", str(tmp_path / "refused")])


def test_init_from_starts_from_the_checkpoint_weights(tmp_path):
    """``--init-from`` starts from a checkpoint's network weights with a fresh step count (with a
    learning rate of 0 the parameters stay exactly the shipped ones) and records the lineage; a
    checkpoint of another preset or other network variants is refused, naming it."""
    from hfl_lite.training.checkpoint import CheckpointError, load_model_weights
    from hfl_lite.training.cli import train_main

    shipped = shipped_checkpoint()
    common = ["--dataset", "ho3d", "--root", str(HO3D_ROOT), "--preset", "cpu", "--batch-size", "4", "--max-steps", "1",
              "--seed", "0", "--no-progress", "--no-augment", "--init-from", str(shipped)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StandinAssetWarning)
        assert train_main(common + ["--lr", "0", "--out", str(tmp_path / "ft")]) == 0
    ckpt = load_checkpoint(tmp_path / "ft" / "last.pt")
    source, source_meta = load_model_weights(shipped)
    assert ckpt["step"] == 1 and ckpt["init_from"] == str(shipped)
    assert ckpt["init_from_meta"]["step"] == source_meta["step"]
    # the source's own lineage travels along: a chain of fine-tunes stays traceable to its start
    assert ckpt["init_from_meta"]["init_from_meta"] == source_meta["init_from_meta"]
    from hfl_lite.model import HFLNet

    parameter_names = [n for n, _ in HFLNet("cpu").named_parameters()]
    assert parameter_names and all(torch.equal(ckpt["model"][n], source[n]) for n in parameter_names)

    # a resume keeps the run's own lineage, even when the --init-from file has changed since
    save_checkpoint(dict(torch.load(shipped, weights_only=True), step=7), tmp_path / "changed.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StandinAssetWarning)
        assert train_main(common[:-1] + [str(tmp_path / "changed.pt"), "--lr", "0", "--out", str(tmp_path / "ft"),
                                         "--resume", "--max-steps", "2"]) == 0
    resumed = load_checkpoint(tmp_path / "ft" / "last.pt")
    assert resumed["step"] == 2 and resumed["init_from"] == str(shipped)
    assert resumed["init_from_meta"] == ckpt["init_from_meta"]

    paper = dict(torch.load(shipped, weights_only=True), preset="paper")
    save_checkpoint(paper, tmp_path / "paper.pt")
    with pytest.raises(CheckpointError, match=r"paper\.pt holds a network of preset 'paper'.*builds preset 'cpu'"):
        train_main(common[:-1] + [str(tmp_path / "paper.pt"), "--out", str(tmp_path / "refused")])
    with pytest.raises(CheckpointError, match="backbone 'hfl'.*builds preset 'cpu' with backbone 'single'"):
        train_main(common + ["--backbone", "single", "--out", str(tmp_path / "refused")])


def test_channels_last_weights_give_the_same_step_and_checkpoints(tmp_path):
    """Channels-last convolution weights (the default) change the memory order, not the maths: the
    same losses, and the same gradients up to float32 rounding (which the L1 object terms' kinks
    amplify, hence a relative tolerance on the whole gradient); ``train`` stores the weights in the
    order it trained them, and a channels-last checkpoint loads into a freshly built network."""
    import copy

    from hfl_lite.data import HO3D
    from hfl_lite.inference import load_model
    from hfl_lite.model import HFLNet
    from hfl_lite.presets import get_preset
    from hfl_lite.training.cli import HFLStep, train_main

    preset = get_preset("cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StandinAssetWarning)
        data = HO3D(HO3D_ROOT, "train", preset.image_size, preset.roi_size)
        batch = torch.utils.data.default_collate([data[i] for i in range(4)])
        plain = load_model(shipped_checkpoint(), "cpu")[0]
    plain = plain.float().train()
    nhwc = copy.deepcopy(plain).to(memory_format=torch.channels_last)
    convs = {n: p for n, p in nhwc.named_parameters() if p.ndim == 4}
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs.values())
    step = HFLStep()
    losses = {}
    for name, model in (("plain", plain), ("nhwc", nhwc)):
        losses[name] = step(model, batch)
        losses[name]["total"].backward()
    for term, value in losses["plain"].items():
        torch.testing.assert_close(losses["nhwc"][term], value, rtol=1e-4, atol=1e-6, msg=term)
    grad = {name: torch.cat([p.grad.flatten() for p in model.parameters()]) for name, model in (("plain", plain), ("nhwc", nhwc))}
    assert (grad["nhwc"] - grad["plain"]).norm() < 1e-2 * grad["plain"].norm()

    common = ["--dataset", "ho3d", "--root", str(HO3D_ROOT), "--preset", "cpu", "--batch-size", "4", "--max-steps", "1",
              "--seed", "3", "--deterministic", "--no-progress", "--no-augment"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StandinAssetWarning)
        assert train_main(common + ["--out", str(tmp_path / "nhwc")]) == 0
        assert train_main(common + ["--no-channels-last", "--out", str(tmp_path / "plain")]) == 0
    first = {name: next(r for r in read_log(tmp_path / name) if "total" in r) for name in ("nhwc", "plain")}
    assert first["nhwc"]["total"] == pytest.approx(first["plain"]["total"], rel=1e-4)
    saved = {name: load_checkpoint(tmp_path / name / "last.pt")["model"] for name in ("nhwc", "plain")}
    assert all(saved["nhwc"][n].is_contiguous(memory_format=torch.channels_last) for n in convs)
    assert all(saved["plain"][n].is_contiguous() for n in convs)
    fresh = HFLNet(preset)
    fresh.load_state_dict(saved["nhwc"])
    assert all(torch.equal(p, saved["nhwc"][n]) for n, p in fresh.named_parameters())


def test_autocast_dtype_follows_the_amp_setting():
    """The one rule for training's precision (the Trainer and ``bench`` both ask it): float32 on
    the CPU unless AMP is asked for, then bfloat16; on CUDA bfloat16 or, without it, float16."""
    from hfl_lite.training.loop import autocast_dtype

    cpu = torch.device("cpu")
    assert autocast_dtype(cpu) is None and autocast_dtype(cpu, False) is None
    assert autocast_dtype(cpu, True) == torch.bfloat16
    cuda = torch.device("cuda")
    assert autocast_dtype(cuda, False) is None
    if torch.cuda.is_available():
        expected = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        assert autocast_dtype(cuda) == autocast_dtype(cuda, True) == expected


def test_trainable_trains_only_the_named_modules_and_keeps_the_rest_bit_for_bit(tmp_path, fresh_checkpoint):
    """``--trainable hand_decoder``: the hand decoder changes; every other parameter and every
    BatchNorm running statistic outside it stays exactly as loaded (frozen parts run in evaluation
    mode); the checkpoint records it. A name that is no submodule is refused, naming it."""
    from hfl_lite.training.checkpoint import load_model_weights
    from hfl_lite.training.cli import train_main

    common = ["--dataset", "ho3d", "--root", str(HO3D_ROOT), "--preset", "cpu", "--batch-size", "4", "--max-steps", "2",
              "--seed", "0", "--no-progress", "--no-augment", "--lr", "1e-3", "--init-from", str(fresh_checkpoint)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StandinAssetWarning)
        assert train_main(common + ["--trainable", "hand_decoder", "--out", str(tmp_path / "run")]) == 0
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    source, _ = load_model_weights(fresh_checkpoint)
    assert ckpt["trainable"] == ["hand_decoder"]
    inside = [k for k in source if k.startswith("hand_decoder.")]
    outside = [k for k in source if not k.startswith("hand_decoder.")]
    assert any(k.endswith("running_mean") for k in outside)  # frozen BatchNorm statistics are checked too
    changed_outside = [k for k in outside if not torch.equal(ckpt["model"][k].to(source[k].dtype), source[k])]
    assert changed_outside == []
    assert sum(not torch.equal(ckpt["model"][k].to(source[k].dtype), source[k]) for k in inside) > len(inside) // 2

    with warnings.catch_warnings(), pytest.raises(ValueError, match="hand_decodr"):
        warnings.simplefilter("ignore", StandinAssetWarning)
        train_main(common + ["--trainable", "hand_decodr", "--out", str(tmp_path / "bad")])
