"""Impossible input is refused before work, impossible results are not reported as found, and bad
samples are named or skipped (issue 21, findings 4-6, and ``infer --out <file>`` of finding 8)."""
from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from hfl_lite.__main__ import main
from hfl_lite.data import HO3D, DataError
from hfl_lite.geometry.camera import enlarge_box, project_points, tight_box, transform_points
from hfl_lite.mano import StandinAssetWarning
from hfl_lite.safe_pickle import safe_load

HO3D_SAMPLE = Path(__file__).resolve().parents[1] / "data_samples" / "ho3d"
SIZE, ROI = 128, 32


pytestmark = pytest.mark.usefixtures("quiet_standin")


@pytest.fixture(scope="module")
def frame() -> dict:
    """Evaluation frame 0 of the sample set: its image, boxes as the training data defines them, K, object."""
    data = HO3D(HO3D_SAMPLE, "evaluation", SIZE, ROI)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StandinAssetWarning)
        f = data.read_frame(0)
    hand_box = enlarge_box(tight_box(project_points(f.joints3d, f.K)), 1.1)
    obj_box = tight_box(project_points(transform_points(f.obj_ctrl3d, f.obj_rot, f.obj_trans), f.K))
    K = [f.K[0, 0], f.K[1, 1], f.K[0, 2], f.K[1, 2]]
    return {"image": data.frame_paths(0)["rgb"], "hand_box": [f"{v:.2f}" for v in hand_box.tolist()],
            "obj_box": [f"{v:.2f}" for v in obj_box.tolist()], "K": [f"{float(v):.4f}" for v in K],
            "object": f.obj_name}


def infer_args(frame: dict, checkpoint, out, **changes) -> list[str]:
    args = {"--checkpoint": [str(checkpoint)], "--image": [str(frame["image"])], "--object": [frame["object"]],
            "--hand-box": frame["hand_box"], "--obj-box": frame["obj_box"], "--K": frame["K"], "--out": [str(out)],
            "--device": ["cpu"]}
    args.update(changes)
    return ["infer"] + [v for k, vs in args.items() for v in (k, *vs)]


def _model_must_not_run(*args, **kwargs):
    raise AssertionError("the network was loaded although the input is impossible")


def _one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


# ---------------------------------------------------------------------------------------------
# infer: input checked before the network runs (findings 4, 5, 7 and 8)
# ---------------------------------------------------------------------------------------------
def _tiny_image(tmp_path: Path) -> dict:
    path = tmp_path / "one_pixel.png"
    cv2.imwrite(str(path), np.zeros((1, 1, 3), np.uint8))
    return {"--image": [str(path)]}


def _cut_jpeg(tmp_path: Path, frame: dict) -> dict:
    data = Path(frame["image"]).read_bytes()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])  # libjpeg decodes it with grey for the rest
    return {"--image": [str(path)]}


def _tiny_box(box: list[str]) -> list[str]:
    x1, y1 = float(box[0]), float(box[1])
    return [str(x1), str(y1), str(x1 + 0.01), str(y1 + 0.01)]


def _existing_file(tmp_path: Path) -> dict:
    path = tmp_path / "results.json"
    path.write_text("{}")
    return {"--out": [str(path)]}


CASES = {  # name: (changes to the request, words the one-line error must hold)
    "hand box outside the image": (lambda t, f: {"--hand-box": ["700", "500", "760", "560"]},
                                   ["--hand-box", "outside"]),
    "0.01 px box": (lambda t, f: {"--hand-box": _tiny_box(f["hand_box"])}, ["--hand-box", "8 px"]),
    "1x1 image": (lambda t, f: _tiny_image(t), ["1 x 1"]),
    "K of zeros": (lambda t, f: {"--K": ["0", "0", "0", "0"]}, ["--K", "focal"]),
    "truncated JPEG": (lambda t, f: _cut_jpeg(t, f), ["cut.jpg", "truncated"]),
    "--out is an existing file": (lambda t, f: _existing_file(t), ["--out", "existing file"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_infer_refuses_impossible_input_before_running_the_network(case, frame, tmp_path, monkeypatch, capsys):
    import hfl_lite.inference

    monkeypatch.setattr(hfl_lite.inference, "load_model", _model_must_not_run)
    make, words = CASES[case]
    out = tmp_path / "out"
    code = main(infer_args(frame, tmp_path / "never_read.pt", out, **make(tmp_path, frame)))
    captured = capsys.readouterr()
    assert code == 1
    line = _one_line(captured.err)
    assert all(w in line for w in words), line
    assert not out.exists()


@pytest.mark.parametrize("wrist, words", [((0.1, 0.05, -2.87), "behind the camera"),
                                          ((0.3, 0.2, 9300.0), "9.3e+03 m from the camera")])
def test_infer_flags_an_impossible_hand_as_not_found(wrist, words, frame, fresh_checkpoint, tmp_path, monkeypatch,
                                                     capsys):
    """Finding 4: a wrist behind the camera (z = -2.87 m) or 9.3 km away was reported with exit 0."""
    import hfl_lite.inference

    def placed(joints2d, joints3d_rel, K, *args, **kwargs):
        return torch.tensor([wrist], dtype=joints2d.dtype).expand(joints2d.shape[0], 3)

    monkeypatch.setattr(hfl_lite.inference, "estimate_hand_translation", placed)
    code = main(infer_args(frame, fresh_checkpoint, tmp_path / "out"))
    printed = capsys.readouterr().out
    assert "hand NOT FOUND" in printed and words in printed
    assert code == hfl_lite.inference.NOT_FOUND_EXIT
    hand = json.loads((tmp_path / "out" / "result.json").read_text())["hand"]
    assert hand["found"] is False and words in hand["problem"]


def test_infer_reports_a_plausible_result_as_found(frame, fresh_checkpoint, tmp_path, monkeypatch, capsys):
    import hfl_lite.inference
    from hfl_lite.geometry.epnp import PoseResult

    monkeypatch.setattr(hfl_lite.inference, "estimate_hand_translation",
                        lambda joints2d, *a, **k: torch.tensor([[0.05, 0.02, 0.6]], dtype=joints2d.dtype))
    monkeypatch.setattr(hfl_lite.inference, "solve_pose_from_votes", lambda conf, *a, **k: PoseResult(
        torch.eye(3, dtype=torch.float64)[None], torch.tensor([[0.0, 0.0, 0.7]], dtype=torch.float64),
        torch.tensor([True])))
    assert main(infer_args(frame, fresh_checkpoint, tmp_path / "out")) == 0
    assert "NOT FOUND" not in capsys.readouterr().out
    report = json.loads((tmp_path / "out" / "result.json").read_text())
    assert report["hand"]["found"] and report["object"]["found"] and report["object"]["problem"] is None


# ---------------------------------------------------------------------------------------------
# data readers: truncated images (finding 5), implausible annotations and empty splits (finding 6)
# ---------------------------------------------------------------------------------------------
def _first_frame(root: Path, split: str) -> tuple[str, str]:
    return tuple((root / f"{split}.txt").read_text().split()[0].split("/"))


def _cut_image(root: Path, split: str) -> Path:
    sequence, name = _first_frame(root, split)
    path = root / split / sequence / "rgb" / f"{name}.jpg"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _damage_meta(root: Path, split: str, key: str, value, meta_folder: str | None = None) -> Path:
    sequence, name = _first_frame(root, split)
    path = root / (meta_folder or split) / sequence / "meta" / f"{name}.pkl"
    meta = safe_load(path)
    meta[key] = value(np.asarray(meta[key], dtype=np.float64).copy())
    path.write_bytes(pickle.dumps(meta, protocol=2))
    return path


def _far_joint(joints):
    joints[5] = (1e30, 1e30, -1e30)  # HO3D's OpenGL frame: in front of the camera
    return joints


def test_a_truncated_image_is_skipped_in_training_and_named_in_evaluation(ho3d_copy):
    """Finding 5: a JPEG cut in half was used silently (the object moved from 0.95 to 2.32 m)."""
    cut = _cut_image(ho3d_copy, "train")
    train = HO3D(ho3d_copy, "train", SIZE, ROI, skip_bad=True)
    samples = [train[i] for i in range(len(train))]
    assert train.skipped == 1 and "truncated" in train._reasons[0] and str(cut) in train._reasons[0]
    assert all(s["sample_id"] != train.ids[0] for s in samples)
    cut = _cut_image(ho3d_copy, "evaluation")
    with pytest.raises(DataError, match="truncated") as info:
        HO3D(ho3d_copy, "evaluation", SIZE, ROI)[0]
    assert info.value.path == str(cut)


@pytest.mark.parametrize("key, damage, named", [("handJoints3D", _far_joint, "joints3d lies 1.73e+30 m"),
                                                ("objTrans", lambda t: t * 1e6, "obj_trans lies")])
def test_an_implausible_annotation_is_skipped_in_training(ho3d_copy, key, damage, named):
    """Finding 6: a joint at 1e30 m crashed training ("hand_boxes ... zero width") instead of
    being skipped like other corrupt samples."""
    path = _damage_meta(ho3d_copy, "train", key, damage)
    train = HO3D(ho3d_copy, "train", SIZE, ROI, skip_bad=True)
    samples = [train[i] for i in range(len(train))]
    assert train.skipped == 1 and str(path) in train._reasons[0] and named in train._reasons[0]
    boxes = torch.stack([s["hand_box"] for s in samples] + [s["obj_box"] for s in samples])
    assert torch.isfinite(boxes).all() and ((boxes[:, 2:] - boxes[:, :2]) > 1).all()


def test_an_implausible_annotation_is_named_in_evaluation(ho3d_copy):
    """Finding 6: evaluation scored the broken joint in millimetres instead of naming the file."""
    path = _damage_meta(ho3d_copy, "evaluation", "handJoints3D", _far_joint, meta_folder="evaluation_gt")
    with pytest.raises(DataError, match=r"joints3d lies 1.73e\+30 m from the camera") as info:
        HO3D(ho3d_copy, "evaluation", SIZE, ROI)[0]
    assert info.value.path == str(path)


def test_an_empty_split_is_one_clear_error(ho3d_copy, fresh_checkpoint, tmp_path, capsys):
    """Finding 6: an empty evaluation.txt gave ``KeyError: 'joints'``."""
    (ho3d_copy / "evaluation.txt").write_text("")
    code = main(["eval", "--checkpoint", str(fresh_checkpoint), "--dataset", "ho3d", "--root", str(ho3d_copy),
                 "--device", "cpu", "--out", str(tmp_path / "eval")])
    line = _one_line(capsys.readouterr().err)
    assert code == 1 and str(ho3d_copy / "evaluation.txt") in line and "lists no frames" in line
    assert not (tmp_path / "eval").exists()
