"""The real path on realdev, the development set of real generator images beside the repository
(`../shared/realdev`, or the folder ATTRLIB_REALDEV names): the audit finds what the set's README says it holds,
and a quick baseline trains and is scored with balanced accuracy. Skipped where the set is absent."""
from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import pytest

from attrlib import runfolder, sweep
from attrlib.cli import main
from attrlib.config import profile
from attrlib.data import ShortcutWarning, eligible_rotations, load_study_data, shortcut_audit
from attrlib.data.sources import discover

JPEG_GRID_TILES = {"lightweight_gan", "ncsnpp", "stylegan2"}   # the README's "tiles of a JPEG grid"
CLEAN_PNG = {"ddpm", "stable_diffusion", "vqgan_clip", "flux", "dcgan", "dalle_pytorch", "deep_daze"}
FACE_PANEL = ["dcgan", "kolors", "ncsnpp", "sdxl", "stylegan2"]   # face generators that keep training images


def realdev_root() -> Path | None:
    for candidate in (Path(__file__).resolve().parents[2] / "shared" / "realdev", os.environ.get("ATTRLIB_REALDEV")):
        if candidate and (Path(candidate) / "images").is_dir():
            return Path(candidate)
    return None


@pytest.fixture(scope="module")
def realdev() -> Path:
    root = realdev_root()
    if root is None:
        pytest.skip("realdev (real generator images) is not at ../shared/realdev beside the repository; set "
                    "ATTRLIB_REALDEV to its folder to run these tests")
    return root


@pytest.fixture(scope="module")
def face(realdev):
    return load_study_data(realdev / "images", heldout="face", val_subclass="auto")


def test_audit_on_realdev_finds_duplicates_jpeg_history_and_the_generators_face_leaves_out(realdev, face, capsys):
    assert main(["audit", str(realdev / "images"), "--heldout", "face"]) == 0
    out = capsys.readouterr().out
    assert "generator 'began' dropped from this rotation" in out and "generator 'stylegan' dropped" in out
    assert "Unattributable test images (157" in out and "began/face/" in out
    assert "Rotations this data allows" in out and "Near-duplicate groups (perceptual hash): " in out

    assert face.dropped_generators == ["began", "stylegan"] and len(face.unattributable) == 97 + 60
    assert sorted(face.split("test").generator.unique()) == FACE_PANEL
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ShortcutWarning)
        audit = shortcut_audit(face)
    flagged = set(audit.cues.at["jpeg_history", "flagged"])
    assert JPEG_GRID_TILES <= flagged and not flagged & CLEAN_PNG
    # every stable_diffusion seed rendered twice (Core ML, two compute units) is one group, on one side of every split
    frame = face.frame
    coreml = frame[frame.path.str.contains("randomSeed_")]
    pair = coreml.path.str.replace(r"computeUnit_[A-Z_]+_modelVersion", "modelVersion", regex=True)
    assert len(coreml) == 12 and (coreml.groupby(pair)["duplicate_group"].nunique() == 1).all()
    assert coreml.groupby(pair).size().eq(2).all()
    assert (frame.groupby("duplicate_group")["split"].nunique() == 1).all()
    assert (frame[frame.split == "test"].groupby("duplicate_group")["ft_split"].nunique() == 1).all()
    assert len(audit.duplicates) >= 8 and "flux" in set(audit.duplicates.generators)
    assert eligible_rotations(discover(realdev / "images").frame) == ["animal", "art", "face", "other", "scene"]
    # the manifest names the same images (and has no group column: the groups are detected the same way)
    manifest = load_study_data(realdev, heldout="face", val_subclass="auto")
    assert manifest.groups_from == face.groups_from == "detected (perceptual hash)"
    assert len(manifest.frame) == len(face.frame) and manifest.dropped_generators == face.dropped_generators
    assert face.val_subclass == "art"  # covers dcgan, vqgan_clip, biggan, deep_daze


def test_quick_baseline_on_realdev_reports_balanced_accuracy_and_its_floors(realdev, face, tmp_path):
    config, _ = profile("quick", data=str(realdev / "images"), heldout=("face",), runs=str(tmp_path), device="cpu",
                        input_policy="crop", image_size=32)
    m = runfolder.load_metrics(sweep.train(config, progress=False))
    held = m["heldout"]
    assert held["n"] == len(face.split("test")) == 157 and held["macro_over"] == FACE_PANEL
    assert set(held["per_generator"]) == set(face.generators) and "began" not in held["per_generator"]
    assert m["heldout_balanced_accuracy"] == held["balanced_accuracy"] and 0.0 <= held["balanced_accuracy"] <= 1.0
    recalls = [held["per_generator"][g]["recall"] for g in FACE_PANEL]
    assert math.isclose(held["balanced_accuracy"], sum(recalls) / len(recalls))
    majority = held["floors"]["majority"]
    assert majority["generator"] == "stylegan2" and math.isclose(majority["accuracy"], 80 / 157)
    assert math.isclose(majority["balanced_accuracy"], 1 / 5)
    assert held["floors"]["prior"]["generator"] == max(m["train_prior"], key=m["train_prior"].get)
    assert m["val_subclass"] == "art" and m["selection"]["rule"] == "valsub"
