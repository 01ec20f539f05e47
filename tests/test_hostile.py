"""Hostile or broken input: unsafe checkpoints, paths escaping the data, symlink loops, files that vanish
mid-training, and wrong parameters, each refused with a message that names the culprit and what to do."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from attrlib import cli, runfolder, sweep, training
from attrlib.config import Config
from attrlib.data import load_study_data
from attrlib.errors import CheckpointError, DataError

from conftest import TINY_HELDOUT


class Payload:
    """Unpickling this would create `marker`: the kind of code a crafted checkpoint smuggles in."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def _crafted(path: Path, marker: Path, wrap=lambda p: p) -> Path:
    torch.save(wrap(Payload(marker)), path)
    return path


def _config(tiny_data, runs, **kw) -> Config:
    return Config(**{**dict(data=str(tiny_data), runs=str(runs), image_size=32, batch_size=16, steps=4,
                            device="cpu", val_subclass="none"), **kw})  # every tiny cell trains: 4 steps an epoch


def test_a_crafted_pretrained_file_is_refused_and_nothing_runs(tiny_data, tmp_path):
    marker = tmp_path / "pwned"
    weights = _crafted(tmp_path / "weights.pt", marker, lambda p: {"state_dict": {"conv.weight": p}})
    with pytest.raises(CheckpointError, match=r"pretrained weights '.*weights\.pt' cannot be loaded safely and was refused: .*nothing of it "
                                              r"was run \(weights_only=True\)") as err:
        sweep.train(_config(tiny_data, tmp_path / "runs", pretrained=str(weights)), progress=False)
    assert "leave 'pretrained' empty" in str(err.value)
    assert not marker.exists()


def test_a_crafted_checkpoint_in_a_run_folder_is_refused_on_resume(tiny_data, tmp_path):
    marker = tmp_path / "pwned"
    config = _config(tiny_data, tmp_path / "runs")
    run = runfolder.run_dir(config)
    run.mkdir(parents=True)
    _crafted(run / "checkpoint.pt", marker, lambda p: {"epoch": 0, "technique": p})
    with pytest.raises(CheckpointError, match=r"checkpoint '.*checkpoint\.pt' cannot be loaded safely and was refused: .*delete the file to "
                                              r"train this run from the start"):
        sweep.train(config, progress=False)
    assert not marker.exists() and not (run / "done").exists()


def test_a_crafted_checkpoint_of_a_reused_upstream_run_is_refused(tiny_data, tmp_path):
    marker = tmp_path / "pwned"
    config = _config(tiny_data, tmp_path / "runs", technique="fine_tuning", technique_params={"steps": 3})
    baseline = runfolder.run_dir(config.replace(technique="baseline", technique_params={}))
    baseline.mkdir(parents=True)
    (baseline / "done").write_text("x\n")  # a finished run is reused as it is: its checkpoint is loaded
    _crafted(baseline / "checkpoint.pt", marker)
    with pytest.raises(CheckpointError, match=r"baseline checkpoint '.*checkpoint\.pt' cannot be loaded safely and was refused: .*delete that run"):
        sweep.train(config, progress=False)
    assert not marker.exists()


def test_a_manifest_path_escaping_the_data_root_is_refused_before_any_work(tiny_data, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(tiny_data, root)
    (tmp_path / "secret.png").write_bytes((root / "lsgm" / "face" / "000.png").read_bytes())
    lines = ["path,generator,subclass"]
    for p in sorted(root.rglob("*.png")):
        rel = p.relative_to(root)
        lines.append(f"{rel.as_posix()},{rel.parts[0]},{rel.parts[1]}")
    lines.append("../secret.png,lsgm,face")
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=rf"line {len(lines)}: path '../secret.png' resolves to .*secret.png, outside "
                                        r"the manifest's folder"):
        sweep.train(_config(root, tmp_path / "runs"), progress=False)
    assert not (tmp_path / "runs").exists()


def test_a_symlink_loop_in_the_data_folder_is_walked_once(tiny_data, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(tiny_data, root)
    os.symlink("..", root / "lsgm" / "face" / "loop")         # lsgm/face/loop -> lsgm (and back, forever)
    os.symlink(root, root / "stylegan2" / "car" / "root")     # a link to the root itself
    plain = load_study_data(tiny_data, heldout=TINY_HELDOUT).frame
    looped = load_study_data(root, heldout=TINY_HELDOUT).frame
    assert len(looped) == len(plain)
    assert looped["path"].map(os.path.realpath).is_unique


def test_a_file_vanishing_mid_training_names_it_and_keeps_the_finished_epochs(tiny_data, tmp_path, monkeypatch):
    from attrlib.data import datasets

    root = tmp_path / "data"
    shutil.copytree(tiny_data, root)
    monkeypatch.setattr(datasets, "CACHE_LIMIT_BYTES", 0)  # stream from disk, as a large dataset does
    config = _config(root, tmp_path / "runs", steps=8)  # 2 epochs of 4 steps
    victim = root / "stylegan2" / "car" / "000.png"
    real = training.engine.train_one_epoch

    def delete_after_first_epoch(technique, loader, device, epoch, epochs, progress=True, **kw):
        if epoch == 1:
            for p in (root / "stylegan2").rglob("*.png"):  # every image of a generator: one is surely drawn
                if TINY_HELDOUT not in p.parts:
                    p.unlink()
        return real(technique, loader, device, epoch, epochs, progress, **kw)

    monkeypatch.setattr(training.engine, "train_one_epoch", delete_after_first_epoch)
    run = runfolder.run_dir(config)
    with pytest.raises(DataError, match=r"image file .*stylegan2.* does not exist; restore it") as err:
        sweep.train(config, progress=False)
    assert "training stopped in epoch 2 of 2; epochs 1-1 are checkpointed" in str(err.value)
    assert "run the same command again to resume" in str(err.value)
    assert torch.load(run / "checkpoint.pt", weights_only=True)["epoch"] == 0
    assert [json.loads(line)["epoch"] for line in (run / "history.jsonl").read_text().splitlines()] == [0]
    assert not (run / "done").exists() and not victim.exists()
    assert runfolder.run_dir(config) != run                    # other data now: not this run's
    shutil.copytree(tiny_data / "stylegan2", root / "stylegan2", dirs_exist_ok=True)   # restored (new files, new times)
    assert runfolder.run_dir(config) == run                    # the same contents: the command resumes this run


@pytest.mark.parametrize("args, message", [
    (["--technique", "nope"], "unknown technique 'nope'; valid techniques: baseline, weighted_sampling"),
    (["--technique", "baseline", "--profile", "huge"], "unknown profile 'huge'; valid profiles: quick, default, claims, thorough, paper"),
    (["--technique", "baseline", "--backbone", "vit"], "config field 'backbone' is 'vit'; valid choices: compact, "
                                                       "local, resnet18, resnet50"),
    (["--technique", "baseline", "--device", "tpu"], "config field 'device' is 'tpu'; valid choices: auto, cpu, cuda, mps"),
    (["--technique", "baseline", "--steps", "-1"], "config field 'steps' is -1; it must be 0 or more"),
    (["--technique", "baseline", "--heldout", "submarine"], "held-out subclass(es) 'submarine' do not occur in folder "),
    (["--technique", "group_dro", "--param", "etaa=0.1"], "technique 'group_dro' has no parameter(s) ['etaa']; valid: ['eta']"),
    (["--technique", "fine_tuning", "--param", "steps=-3"], "technique parameter 'steps' of 'fine_tuning' is -3"),
])
def test_wrong_parameters_fail_before_any_work_listing_the_valid_choices(tiny_data, tmp_path, capsys, args, message):
    runs = tmp_path / "runs"
    rc = cli.main(["train", "--data", str(tiny_data), "--runs", str(runs), "--profile", "quick",
                   "--heldout", TINY_HELDOUT, *args])
    err = capsys.readouterr().err
    assert rc == 2 and message in err, err
    assert not runs.exists()


def test_a_device_that_is_not_here_fails_before_any_work(tiny_data, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    runs = tmp_path / "runs"
    rc = cli.main(["train", "--data", str(tiny_data), "--runs", str(runs), "--profile", "quick",
                   "--heldout", TINY_HELDOUT, "--technique", "fine_tuning", "--device", "cuda"])
    assert rc == 2 and "device 'cuda' is not available here; valid choices: auto, cpu" in capsys.readouterr().err
    assert not runs.exists()  # not even the upstream baseline of fine_tuning
