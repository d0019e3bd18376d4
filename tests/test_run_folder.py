"""A run folder belongs to one run (issue 21, findings 1-3): a forgotten --resume, two runs in one
folder, a hard kill and a kill during a save lose nothing and log every step once."""
from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from hfl_lite.errors import UserError
from hfl_lite.training import TrainConfig, Trainer, load_checkpoint

TESTS = Path(__file__).resolve().parent
HO3D_SAMPLE = TESTS.parent / "data_samples" / "ho3d"


class Numbers(torch.utils.data.Dataset):
    """24 fixed regression samples: 6 batches of 4 per epoch, so ``last.pt`` is written every 6 steps."""

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(24, 4, generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "y": self.x[i].sum(0, keepdim=True)}


def tiny_trainer(out, max_steps: int, meta: dict | None = None, width: int = 8, pause: float = 0.0,
                 fail_at: int | None = None) -> Trainer:
    """A two-layer network trained by the real Trainer; ``pause`` slows each step down, ``fail_at``
    makes that step (counted in this process) raise."""
    calls = []

    def step(model, batch):
        calls.append(1)
        if fail_at is not None and len(calls) == fail_at:
            raise RuntimeError("a failure inside the training step")
        time.sleep(pause)
        return {"total": ((model(batch["x"]) - batch["y"]) ** 2).mean()}

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, width), nn.ReLU(), nn.Linear(width, 1))
    config = TrainConfig(out_dir=str(out), epochs=1000, batch_size=4, max_steps=max_steps, progress=False,
                         meta=meta if meta is not None else {"preset": "cpu"})
    return Trainer(model, step, Numbers(), config)


def logged_steps(run: Path) -> tuple[list[int], list[int]]:
    """The steps recorded in log.csv and the step records (not events) of log.jsonl."""
    with open(run / "log.csv", newline="") as f:
        in_csv = [int(r["step"]) for r in csv.DictReader(f)]
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    return in_csv, [r["step"] for r in records if "event" not in r]


def snapshot(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


def test_a_forgotten_resume_is_refused_and_the_run_kept(tmp_path):
    """Finding 1: a second start without --resume used to replace last.pt and append to the log."""
    run = tmp_path / "run"
    tiny_trainer(run, 8).fit()
    before = snapshot(run)
    with pytest.raises(UserError, match=r"holds a run.*--resume.*--overwrite"):
        tiny_trainer(run, 1).fit()
    assert snapshot(run) == before
    assert load_checkpoint(run / "last.pt")["step"] == 8


def test_train_command_refuses_before_setting_up(tmp_path, capsys):
    """The command says so in one line, before reading data or building HFL-Net, and names both ways out."""
    from hfl_lite.__main__ import main

    run = tmp_path / "run"
    tiny_trainer(run, 2).fit()
    before = snapshot(run)
    common = ["train", "--dataset", "ho3d", "--root", str(HO3D_SAMPLE), "--preset", "cpu", "--max-steps", "1",
              "--no-progress", "--out", str(run)]
    assert main(common) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(run) in err and "--resume" in err and "--overwrite" in err
    assert main(common + ["--resume", "--overwrite"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "exclude each other" in err
    assert snapshot(run) == before


def test_overwrite_keeps_the_previous_run_until_the_first_checkpoint(tmp_path):
    run = tmp_path / "run"
    tiny_trainer(run, 8).fit()
    old = load_checkpoint(run / "last.pt")["model"]
    with pytest.raises(RuntimeError, match="inside the training step"):
        tiny_trainer(run, 20, fail_at=3).fit(overwrite=True)  # fails before its first checkpoint
    assert load_checkpoint(run / "previous" / "last.pt")["step"] == 8
    assert logged_steps(run / "previous") == (list(range(1, 9)), list(range(1, 9)))
    assert not (run / "last.pt").exists() and not (run / "run.lock").exists()
    # a second --overwrite still keeps the complete previous run, not the failed one's logs
    with pytest.raises(RuntimeError, match="inside the training step"):
        tiny_trainer(run, 20, fail_at=2).fit(overwrite=True)
    assert torch.equal(load_checkpoint(run / "previous" / "last.pt")["model"]["0.weight"], old["0.weight"])
    tiny_trainer(run, 3).fit(overwrite=True)
    assert not (run / "previous").exists()
    assert load_checkpoint(run / "last.pt")["step"] == 3
    assert logged_steps(run) == ([1, 2, 3], [1, 2, 3])


def _wait_for_step(run: Path, step: int, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        if (run / "log.csv").is_file() and (run / "last.pt").is_file():
            with open(run / "log.csv", newline="") as f:
                if any(int(r["step"]) >= step for r in csv.DictReader(f) if (r.get("step") or "").isdigit()):
                    return
        time.sleep(0.1)
    raise AssertionError(f"the training process did not reach step {step} in {timeout} s")


def _start_training_process(run: Path) -> subprocess.Popen:
    """``tiny_trainer(run).fit()`` in another Python process, with the hfl_lite under test."""
    import hfl_lite

    code = (f"import sys; sys.path.insert(0, {str(TESTS)!r}); import test_run_folder as t; "
            f"t.tiny_trainer({str(run)!r}, 10_000, pause=0.05).fit()")
    package_root = str(Path(hfl_lite.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([package_root, os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE, text=True)


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stderr.close()


def test_a_second_run_into_the_same_folder_is_refused_naming_the_pid(tmp_path):
    """Finding 2: two runs into one folder both ran to the end, interleaving their logs."""
    run = tmp_path / "run"
    proc = _start_training_process(run)
    try:
        _wait_for_step(run, 2, proc)
        for resume in (False, True):
            with pytest.raises(UserError, match=rf"in use by another training run \(PID {proc.pid} "):
                tiny_trainer(run, 12).fit(resume=resume)
    finally:
        _kill(proc)


def test_a_hard_kill_resumes_without_duplicate_steps(tmp_path, capsys):
    """Finding 3: after ``kill -9`` mid-epoch and --resume, the steps between the last checkpoint
    and the kill appeared twice in both logs. Now they appear once, and the lock the killed process
    left is taken over with a message."""
    run = tmp_path / "run"
    proc = _start_training_process(run)
    try:
        _wait_for_step(run, 9, proc)  # last.pt holds step 6; steps 7-9 are logged after it
    finally:
        _kill(proc)
    killed_at = max(logged_steps(run)[0])
    assert load_checkpoint(run / "last.pt")["step"] < killed_at  # logged steps the checkpoint does not hold
    capsys.readouterr()
    tiny_trainer(run, killed_at + 2).fit(resume=True)
    expected = list(range(1, killed_at + 3))
    assert logged_steps(run) == (expected, expected)
    assert f"taking over the lock of PID {proc.pid}" in capsys.readouterr().out
    assert not list(run.glob(".*.tmp")) and not (run / "run.lock").exists()


def test_resume_removes_the_temporary_file_of_a_killed_save(tmp_path):
    run = tmp_path / "run"
    tiny_trainer(run, 6).fit()
    (run / ".last.pt.k1ll3d.tmp").write_bytes(b"")  # what a kill during torch.save leaves
    tiny_trainer(run, 8).fit(resume=True)
    assert not (run / ".last.pt.k1ll3d.tmp").exists()
    assert logged_steps(run)[0] == list(range(1, 9))


def test_resume_without_a_readable_last_pt_says_so_and_names_the_newest_checkpoint(tmp_path):
    """Finding 3: a kill during the first save left only a 0-byte temporary file, and --resume
    silently started again at step 1; an unreadable last.pt must not be passed over either."""
    run = tmp_path / "run"
    tiny_trainer(run, 6).fit()
    shutil.copy(run / "last.pt", run / "best.pt")
    tiny_trainer(run, 9).fit(resume=True)
    data = (run / "last.pt").read_bytes()
    (run / "last.pt").write_bytes(data[: len(data) // 2])
    before = snapshot(run)
    with pytest.raises(UserError, match=rf"last\.pt cannot be read.*newest readable checkpoint is {run / 'best.pt'} "
                                        r"\(step 6\)"):
        tiny_trainer(run, 12).fit(resume=True)
    assert snapshot(run) == before

    (run / "last.pt").unlink()
    (run / "best.pt").unlink()
    (run / ".last.pt.a1b2c3.tmp").write_bytes(b"")
    with pytest.raises(UserError, match=r"last\.pt is missing.*no readable checkpoint is left: pass --overwrite"):
        tiny_trainer(run, 12).fit(resume=True)
    assert logged_steps(run)[0] == list(range(1, 10))  # nothing started over


def test_resume_of_another_network_is_one_sentence(tmp_path):
    """Finding 7 for --resume: another preset, or weights that do not fit, in one sentence naming both."""
    run = tmp_path / "run"
    config = {"backbone": "hfl"}
    tiny_trainer(run, 2, meta={"preset": "cpu", "model_config": config}).fit()
    with pytest.raises(UserError) as info:
        tiny_trainer(run, 4, meta={"preset": "paper", "model_config": config}).fit(resume=True)
    message = str(info.value)
    assert "\n" not in message and "preset 'cpu' with backbone 'hfl'" in message
    assert "builds preset 'paper' with backbone 'hfl'" in message
    with pytest.raises(UserError) as info:
        tiny_trainer(run, 4, meta={"preset": "cpu", "model_config": config}, width=16).fit(resume=True)
    message = str(info.value)
    assert "\n" not in message and str(run / "last.pt") in message and "does not fit" in message
    assert logged_steps(run)[0] == [1, 2]


def test_the_lock_works_where_the_file_system_has_no_hard_links(tmp_path, monkeypatch):
    from hfl_lite.training.run_folder import LOCK_NAME, RunFolder

    def no_links(src, dst):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    run = tmp_path / "run"
    with RunFolder(run):
        assert json.loads((run / LOCK_NAME).read_text())["pid"] == os.getpid()
        with pytest.raises(UserError, match=rf"in use by another training run \(PID {os.getpid()} "):
            RunFolder(run).claim()
    assert not (run / LOCK_NAME).exists()
