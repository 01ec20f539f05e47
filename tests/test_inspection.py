"""Inspection: Grad-CAM maps (size, range, dual head, hooks), content reliance, the subclass probe."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from attrlib import sweep
from attrlib.config import Config
from attrlib.data import ImageDataset, load_study_data
from attrlib.errors import DataError
from attrlib.evaluation import load_run
from attrlib.inspection import (GradCam, cam_examples, content_reliance, content_reliance_table, grad_cam, mask_area,
                                mask_share, normalize_maps, pick_examples, probe_model, probe_table, subclass_probe,
                                summarize_reliance)
from attrlib.models import build_model
from attrlib.reporting import cam_explorer, cam_grid, explain_figure, run_cam_grid

torch.set_num_threads(1)


def _model(dual_head: bool, n_generators: int = 6, n_subclasses: int = 3, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(Config(image_size=32), n_generators, n_subclasses, dual_head=dual_head)


# --------------------------------------------------------------------------------------------- CAM maps
@pytest.mark.parametrize("dual_head", [False, True])
def test_cam_maps_have_the_input_size_and_lie_in_0_1(dual_head):
    model = _model(dual_head).train()
    x = torch.rand(5, 3, 32, 32)
    hooks_before = len(model.cam_layer._forward_hooks), len(model.cam_layer._backward_hooks)
    with GradCam(model) as cam:
        assert not model.training
        maps, targets = cam(x)
    assert model.training  # the mode it had
    assert (len(model.cam_layer._forward_hooks), len(model.cam_layer._backward_hooks)) == hooks_before
    assert all(p.grad is None for p in model.parameters())
    assert maps.shape == (5, 1, 32, 32)
    assert torch.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1
    assert torch.equal(targets, model.eval()(x).argmax(1))
    nonzero = maps.flatten(1).amax(1) > 0
    assert torch.allclose(maps.flatten(1).amax(1)[nonzero], torch.ones(int(nonzero.sum())))


def test_cam_on_the_generator_head_of_a_dual_head_model_explains_that_head():
    model = _model(True).eval()
    x = torch.rand(3, 3, 32, 32)
    target = torch.tensor([0, 1, 5])  # 5 exists in the generator head (6 classes), not in the subclass head (3)
    maps, used = grad_cam(model, x, target)
    assert maps.shape == (3, 1, 32, 32) and torch.equal(used, target)
    sub_maps, _ = grad_cam(model, x, torch.tensor([0, 1, 2]), head="subclass")
    assert sub_maps.shape == (3, 1, 32, 32)
    with pytest.raises(ValueError, match="one class index per image"):
        grad_cam(model, x, torch.tensor([0]))


def test_cam_works_on_a_frozen_body():
    model = _model(False).eval()
    for p in model.body_parameters():  # as fine_tuning leaves it
        p.requires_grad_(False)
    maps, _ = grad_cam(model, torch.rand(2, 3, 32, 32))
    assert maps.shape == (2, 1, 32, 32) and torch.isfinite(maps).all()


def test_normalize_maps_keeps_a_zero_map_zero():
    maps = torch.zeros(3, 1, 4, 4)
    maps[1] = torch.arange(16.0).view(1, 4, 4) - 5  # negative parts are cut
    maps[2, 0, 0, 0] = float("nan")
    out = normalize_maps(maps)
    assert torch.equal(out[0], torch.zeros(1, 4, 4)) and torch.equal(out[2], torch.zeros(1, 4, 4))
    assert out[1].max() == 1.0 and out[1].min() == 0.0 and torch.isfinite(out).all()


# --------------------------------------------------------------------------------------------- content reliance
def test_mask_share_on_synthetic_maps():
    masks = torch.zeros(3, 1, 8, 8)
    masks[:, :, 2:6, 2:6] = 1.0  # a quarter of the image
    maps = torch.zeros(3, 1, 8, 8)
    maps[0, :, 3:5, 3:5] = 1.0   # entirely inside the object
    maps[1] = 1.0                # spread evenly: scores the mask's area
    share = mask_share(maps, masks)
    assert share[0] == pytest.approx(1.0) and share[1] == pytest.approx(0.25)
    assert torch.isnan(share[2])  # an all-zero map has no mass to place
    assert torch.allclose(mask_area(masks), torch.full((3,), 0.25))
    per_image = pd.DataFrame({"share_in_mask": share.numpy(), "mask_area": mask_area(masks).numpy()})
    s = summarize_reliance(per_image)
    assert s["n_images"] == 2 and s["share_in_mask"] == pytest.approx(0.625)
    assert s["ratio_to_area"] == pytest.approx(2.5)


@pytest.fixture(scope="module")
def masked_root(tmp_path_factory):
    """Two generators, two training subclasses and a held-out one; each image has a square object and its mask."""
    root = tmp_path_factory.mktemp("masked")
    rng = np.random.default_rng(0)
    rows = []
    for g in ("gen_a", "gen_b"):
        for s in ("cat", "dog", "tank"):
            for k in range(6):
                img = rng.integers(0, 60, (32, 32, 3)).astype(np.uint8)
                mask = np.zeros((32, 32), np.uint8)
                top, left = rng.integers(0, 16, 2)
                mask[top:top + 12, left:left + 12] = 255
                img[mask > 0] += 150
                (root / g / s).mkdir(parents=True, exist_ok=True)
                (root / "_masks" / g / s).mkdir(parents=True, exist_ok=True)
                Image.fromarray(img).save(root / g / s / f"{k}.png")
                Image.fromarray(mask).save(root / "_masks" / g / s / f"{k}.png")
                rows.append({"path": f"{g}/{s}/{k}.png", "generator": g, "subclass": s,
                             "mask": f"_masks/{g}/{s}/{k}.png"})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root / "manifest.csv"


@pytest.fixture(scope="module")
def masked_data(masked_root):
    return load_study_data(masked_root, heldout=("tank",))


def test_content_reliance_on_a_masked_dataset(masked_data):
    ds = ImageDataset(masked_data.split("test"), masked_data, policy="crop", size=32, train=False, with_mask=True)
    model = _model(True, n_generators=2, n_subclasses=2)
    per_image = content_reliance(model, ds, masked_data.generators, target="true", batch_size=5)
    assert len(per_image) == len(ds) == 12
    assert list(per_image.columns) == ["path", "generator", "pred", "target", "share_in_mask", "mask_area",
                                      "fingerprint_share"]
    assert (per_image["target"] == per_image["generator"]).all()
    assert per_image["mask_area"].to_numpy() == pytest.approx(144 / 1024)
    assert per_image["share_in_mask"].dropna().between(0, 1).all()
    with pytest.raises(DataError, match="with_mask=True"):
        content_reliance(model, ImageDataset(masked_data.split("test"), masked_data, size=32, train=False),
                         masked_data.generators)
    # a test-time input transform (runtime_adversarial's attack) is what the CAM explains: the model sees it
    seen = []

    def transform(x):
        seen.append(x.shape[0])
        return x.flip(-1)  # mirrored images: CAM mass moves, the clean image's mask does not

    moved = content_reliance(model, ds, masked_data.generators, target="true", batch_size=5, inputs=transform)
    assert sum(seen) == len(ds)
    assert not np.allclose(moved["share_in_mask"].to_numpy(), per_image["share_in_mask"].to_numpy(), equal_nan=True)


def test_cam_grid_figure(masked_data):
    ds = ImageDataset(masked_data.split("test"), masked_data, size=32, train=False)
    idx = pick_examples(ds.frame, masked_data.generators, per_generator=2)
    assert len(idx) == 4 and set(ds.frame["generator"].iloc[idx]) == set(masked_data.generators)
    ex = cam_examples(_model(False, n_generators=2), ds, idx)
    assert ex["cam"].shape == (4, 1, 32, 32)
    fig = cam_grid(ex["x"], ex["cam"], ex["pred"], ex["true"], masked_data.generators, title="t")
    assert len(fig.axes) == 8
    plt.close(fig)


# --------------------------------------------------------------------------------------------- probe
def test_subclass_probe_reads_separable_features_and_not_noise():
    rng = np.random.default_rng(0)
    y_tr, y_va = rng.integers(0, 7, 350), rng.integers(0, 7, 140)
    centres = rng.normal(0, 3, (7, 16))
    f_tr, f_va = centres[y_tr] + rng.normal(0, 1, (350, 16)), centres[y_va] + rng.normal(0, 1, (140, 16))
    leaky = subclass_probe(f_tr, y_tr, f_va, y_va, n_subclasses=7)
    assert leaky["accuracy"] > 0.9 and leaky["chance"] == pytest.approx(1 / 7)
    blind = subclass_probe(rng.normal(0, 1, (350, 16)), y_tr, rng.normal(0, 1, (140, 16)), y_va, n_subclasses=7)
    assert blind["accuracy"] < 0.35
    with pytest.raises(DataError, match="held-out"):
        subclass_probe(f_tr, y_tr, f_va, np.full(140, -1), n_subclasses=7)


def test_probe_model_on_the_tiny_data(tiny_data):
    data = load_study_data(tiny_data, heldout=("military_vehicle",))
    out = probe_model(_model(False, n_subclasses=3), data, size=32)
    assert out["chance"] == pytest.approx(1 / 3) and 0 <= out["accuracy"] <= 1
    assert out["n_train"] == len(data.split("train")) and out["n_val"] == len(data.split("val"))


# --------------------------------------------------------------------------------------------- from run folders
def test_run_level_helpers(masked_root, masked_data, tmp_path, monkeypatch):
    config = Config(data=str(masked_root), heldout=("tank",), runs=str(tmp_path),
                    image_size=32, batch_size=8, steps=8, technique="blind_head",
                    val_subclass="none")  # as masked_data is loaded
    run_dir = sweep.train(config, progress=False)
    table = content_reliance_table({"blind_head": [run_dir]}, data=masked_data)
    assert table.loc["blind_head", "n_images"] <= 12 and table.loc["blind_head", "seeds"] == 1
    assert table.loc["blind_head", "mask_area"] == pytest.approx(144 / 1024)
    probes = probe_table({"blind_head": [run_dir]}, data=masked_data)
    assert probes.loc["blind_head", "chance"] == pytest.approx(0.5)
    fig = run_cam_grid(run_dir, data=masked_data)
    assert len(fig.axes) == 2 * len(masked_data.generators)
    plt.close(fig)
    run = load_run(run_dir, data=masked_data)
    item = ImageDataset(masked_data.split("test"), masked_data, size=32, train=False)[0]
    fig = explain_figure(run.technique, item["x"], item["generator"], run.generators, target="true")
    assert len(fig.axes) == 3
    plt.close(fig)
    box = cam_explorer({"blind_head": run_dir}, data=masked_data, mode="live")
    assert box.children[1].max == len(masked_data.split("test")) - 1
    # headless (attrlib study sets ATTRLIB_HEADLESS for its kernels): a plain figure, no widgets for nbclient
    # to wait on; "auto" follows the variable
    static = cam_explorer({"blind_head": run_dir}, data=masked_data, mode="static")
    assert isinstance(static, plt.Figure) and len(static.axes) == 3
    plt.close(static)
    monkeypatch.setenv("ATTRLIB_HEADLESS", "1")
    auto = cam_explorer({"blind_head": run_dir}, data=masked_data)
    assert isinstance(auto, plt.Figure)
    plt.close(auto)
    monkeypatch.delenv("ATTRLIB_HEADLESS")
    assert not isinstance(cam_explorer({"blind_head": run_dir}, data=masked_data), plt.Figure)
    with pytest.raises(ValueError, match="valid choices"):
        cam_explorer({"blind_head": run_dir}, data=masked_data, mode="widgets")
