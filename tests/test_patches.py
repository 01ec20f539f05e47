"""Patches, not one crop: random crops to train, a grid over the whole image to evaluate, log-probabilities
averaged per image (`ImageDataset(patches=k)`, `collate_patches`, `predict_probs`)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from attrlib import sweep
from attrlib.config import Config
from attrlib.data import ImageDataset, collate_patches, grid_shape, load_study_data
from attrlib.techniques import image_logits, predict_probs


@pytest.fixture(scope="module")
def large(tmp_path_factory):
    """Two generators, two subclasses and a held-out one, images of 96 x 80 (larger than the 32-px crop)."""
    root = tmp_path_factory.mktemp("large")
    rng = np.random.default_rng(0)
    for g, period in (("gen_a", 2), ("gen_b", 3)):
        for sub in ("cat", "dog", "held"):
            (root / g / sub).mkdir(parents=True)
            for k in range(6):
                img = rng.uniform(0.3, 0.7, (96, 80, 3))
                img[:, ::period] += 0.2
                Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(root / g / sub / f"{k}.png")
    return root


def test_the_evaluation_grid_covers_the_image_and_is_bounded():
    assert grid_shape(96, 80, 32, 16) == (3, 3)        # ceil(96/32) x ceil(80/32) covers 96 x 80
    assert grid_shape(32, 32, 32, 16) == (1, 1)
    assert grid_shape(1024, 1024, 64, 16) == (4, 4)    # 16 x 16 needed, thinned to the bound
    assert grid_shape(512, 1536, 64, 16)[0] * grid_shape(512, 1536, 64, 16)[1] <= 16


def test_items_hold_random_patches_to_train_and_a_grid_to_evaluate(large):
    data = load_study_data(large, heldout="held")
    frame = data.split("test")
    one = ImageDataset(frame, data, size=32, train=False)
    grid = ImageDataset(frame, data, size=32, train=False, patches=16)
    x1, xg = one[0]["x"], grid[0]["x"]
    assert x1.shape == (3, 32, 32) and xg.shape == (9, 3, 32, 32) and grid[0]["patches"] == 9
    assert torch.equal(xg[4], x1)                       # the grid's middle crop is the single centre crop
    full = torch.from_numpy(np.array(Image.open(frame["path"].iloc[0]))).permute(2, 0, 1).float() / 255
    assert torch.equal(xg[0], full[:, :32, :32]) and torch.equal(xg[-1], full[:, -32:, -32:])  # corners covered
    train = ImageDataset(data.split("train"), data, size=32, train=True, patches=4)
    torch.manual_seed(0)
    item = train[0]
    assert item["x"].shape == (4, 3, 32, 32) and not torch.equal(item["x"][0], item["x"][1])
    batch = collate_patches([train[0], train[1], train[2]])
    assert batch["x"].shape == (12, 3, 32, 32) and batch["owner"].tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert batch["generator"].shape == (12,) and batch["index"].tolist()[4] == 1


def test_one_patch_items_are_the_old_single_crop(tiny_data):
    data = load_study_data(tiny_data)
    a = ImageDataset(data.split("val"), data, size=32, train=False)
    b = ImageDataset(data.split("val"), data, size=32, train=False, patches=16)  # 32-px images: one position
    assert b[0]["patches"] == 1 and torch.equal(a[0]["x"], b[0]["x"][0])
    one, many = collate_patches([a[0], a[1]]), collate_patches([b[0], b[1]])
    assert all(torch.equal(one[k], many[k]) for k in ("x", "generator", "subclass", "group", "index"))
    t1 = ImageDataset(data.split("train"), data, size=32, train=True)
    t4 = ImageDataset(data.split("train"), data, size=32, train=True, patches=4)
    torch.manual_seed(3)
    x1 = t1[5]["x"]
    torch.manual_seed(3)
    assert torch.equal(x1, t4[5]["x"][0])  # the same random draw: runs on images of the crop's size do not move


def test_predictions_average_the_patches_log_probabilities():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    owner = torch.tensor([0, 0, 1])
    agg = image_logits(logits, owner)
    assert torch.allclose(agg[0], torch.log_softmax(logits[:2], 1).mean(0)) and agg.shape == (2, 2)
    assert image_logits(logits, torch.tensor([0, 1, 2])) is logits  # one patch each: unchanged
    loader = [{"x": torch.zeros(3, 1), "owner": owner}]
    probs = predict_probs(lambda x: logits, loader, torch.device("cpu"), 2)
    assert probs.shape == (2, 2) and np.allclose(probs.sum(1), 1)


def test_test_patches_change_the_predictions_of_large_images(large, tmp_path):
    common = dict(data=str(large), heldout=("held",), runs=str(tmp_path), image_size=32, batch_size=8, steps=6,
                  device="cpu")
    one = sweep.train(Config(**common, train_patches=1, test_patches=1), progress=False)
    grid = sweep.train(Config(**common, train_patches=1, test_patches=16), progress=False)
    a, b = (json.loads((r / "metrics.json").read_text()) for r in (one, grid))
    pa, pb = ((r / "predictions.csv").read_text() for r in (one, grid))
    assert a["heldout"]["n"] == b["heldout"]["n"] == 12   # one row per image, whatever its patches
    assert pa != pb                                        # the same weights, other inputs: other probabilities
    many = sweep.train(Config(**common, train_patches=4, test_patches=1), progress=False)
    h1 = [json.loads(line) for line in (one / "history.jsonl").read_text().splitlines()]
    h4 = [json.loads(line) for line in (many / "history.jsonl").read_text().splitlines()]
    assert sum(h["steps"] for h in h4) == sum(h["steps"] for h in h1) == 6   # the budget is steps either way
    assert h4[0]["loss"] != h1[0]["loss"]
