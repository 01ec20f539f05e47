"""The realistic variant of the benchmark: messy files with known ground truth, loadable by the data layer."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from attrlib.simulator import DEFAULT_STRENGTH, GENERATORS, cell_counts, realistic, synthesize
from attrlib.data import ImageDataset, load_study_data

# strength 0: the files' structure (sizes, formats, counts) does not depend on the fingerprint, and no
# per-side calibration is needed, which keeps this fixture to a few seconds; the fingerprint is tested below
STRUCTURE = dict(scale=1 / 250, size=32, strength=0.0, realistic=True, progress=False)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return synthesize(tmp_path_factory.mktemp("realistic") / "r", **STRUCTURE)


@pytest.fixture(scope="module")
def manifest(folder):
    return pd.read_csv(folder / "manifest.csv", keep_default_na=False)


def _opened(folder, frame):
    out = []
    for rel in frame["path"]:
        with Image.open(folder / rel) as im:
            out.append((im.format, im.mode, im.size[1], im.size[0]))
    return pd.DataFrame(out, columns=["format", "mode", "height", "width"], index=frame.index)


def test_contains_the_messy_files_of_a_real_folder(folder, manifest):
    files = _opened(folder, manifest)
    assert {"JPEG", "PNG"} <= set(files["format"])
    assert manifest["path"].str.endswith(".jpg").sum() == (files["format"] == "JPEG").sum() > 0
    # rare modes (palette, grayscale, 16-bit) are 10 % of one or two generators: some show at this scale
    assert {"RGB", "RGBA"} <= set(files["mode"]) and set(files["mode"]) & {"P", "L", "I;16"}
    assert (files["height"] != files["width"]).any()                       # non-square, 3:1 panoramas
    assert (files["width"] == 3 * files["height"]).any()
    assert ((files["height"] < 32) | (files["width"] < 32)).any()          # under the model's crop
    assert (files["height"] * files["width"] > 4 * 32 * 32).mean() > 0.5   # most larger than the crop: patches matter


def test_counts_are_unequal_with_missing_cells_and_a_partial_heldout(manifest):
    per_generator = manifest.groupby("generator").size()
    assert set(per_generator.index) == set(GENERATORS) and per_generator.max() >= 3 * per_generator.min()
    tested = set(manifest.loc[manifest["split"] == "pool", "generator"])
    assert tested == set(realistic.REALISTIC_TEST) and tested < set(GENERATORS)
    counts = cell_counts(1 / 250, realistic=True)
    got = manifest.groupby(["split", "generator", "subclass"]).size().to_dict()
    assert got == {(sp, g, sc): n for sp, rows in counts.items() for g, row in rows.items() for sc, n in row.items()}


def test_files_match_what_benchmark_json_declares(folder, manifest):
    params = json.loads((folder / "benchmark.json").read_text())
    section, files = params["realistic"], _opened(folder, manifest)
    assert section == realistic.spec(32) and params["note"].count("realistic")
    for g, rows in manifest.groupby("generator"):
        declared = section["generators"][g]
        have = files.loc[rows.index]
        assert set(zip(have["format"], have["mode"])) <= {(f["format"], f["mode"]) for f in declared["formats"]}
        assert set(zip(have["height"], have["width"])) <= {(s["height"], s["width"]) for s in declared["sizes"]}
        assert params["files"][g]["n_images"] == len(rows)
        assert sum(params["files"][g]["kinds"].values()) == len(rows)
        if (have["format"] == "JPEG").any():
            lo, hi = declared["jpeg_quality"]
            assert lo <= params["files"][g]["jpeg_quality"][0] <= params["files"][g]["jpeg_quality"][1] <= hi
    # masks: 8-bit PNGs at the image's own size
    for rel, mask_rel in manifest[["path", "mask"]].sample(20, random_state=0).itertuples(index=False):
        with Image.open(folder / rel) as im, Image.open(folder / mask_rel) as m:
            assert m.format == "PNG" and m.mode == "L" and m.size == im.size


def test_loads_with_the_data_layer(folder):
    data = load_study_data(folder, heldout="military_vehicle")
    assert data.n_generators == 6 and len(data.split("test")) > 0
    for split, train in (("train", True), ("test", False)):
        ds = ImageDataset(data.split(split), data, policy="crop", size=32, train=train, with_mask=True)
        batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=len(ds))))
        assert batch["x"].shape == (len(ds), 3, 32, 32) and batch["mask"].shape == (len(ds), 1, 32, 32)


def test_cached_and_never_mistaken_for_the_default(folder, tmp_path):
    stamp = (folder / "benchmark.json").stat().st_mtime_ns
    assert synthesize(folder, **STRUCTURE) == folder
    assert (folder / "benchmark.json").stat().st_mtime_ns == stamp
    # a benchmark.json's own `realistic` section round-trips (the study's unbiased twin passes params back)
    params = json.loads((folder / "benchmark.json").read_text())
    assert synthesize(folder, **{**STRUCTURE, "realistic": params["realistic"]}) == folder
    assert (folder / "benchmark.json").stat().st_mtime_ns == stamp
    default = synthesize(tmp_path / "d", scale=1 / 1000, size=32, strength=0.0, progress=False)
    assert "realistic" not in json.loads((default / "benchmark.json").read_text())
    synthesize(tmp_path / "d", scale=1 / 1000, size=32, strength=0.0, progress=False, realistic=True)
    assert "realistic" in json.loads((default / "benchmark.json").read_text())


def test_fingerprint_is_made_at_the_images_own_size_before_encoding(tmp_path):
    # stylegan3 draws no noise, so the same stream gives the same content at strength 0 and at the default
    params = dict(size=16, instance_spread=0.25)
    images = {}
    for s in (0.0, DEFAULT_STRENGTH):
        rows = realistic.write_cell(tmp_path / f"s{s}", {**params, "strength": s}, "stylegan3", "face", "train", 6,
                                    np.random.default_rng(0))
        images[s] = {r[0]: np.asarray(Image.open(tmp_path / f"s{s}" / r[0]).convert("RGB"), dtype=np.float64)
                     for r in rows}
    assert images[0.0].keys() == images[DEFAULT_STRENGTH].keys()
    for rel, clean in images[0.0].items():
        diff = images[DEFAULT_STRENGTH][rel] - clean
        rms = float(np.sqrt((diff ** 2).mean()))
        if rel.endswith(".png"):   # exact pixels: the fingerprint's RMS, a couple of grey levels
            assert 0.5 * DEFAULT_STRENGTH < rms < 2.5 * DEFAULT_STRENGTH, rel
        else:                      # JPEG: compression applied after the fingerprint changes it, not removes it
            assert rms > 0.2 * DEFAULT_STRENGTH, rel
        assert abs(diff.mean()) < 0.5, rel   # high-frequency only: no brightness shift



def test_cli_passes_realistic_through(tmp_path, monkeypatch):
    from attrlib import cli
    seen = {}
    monkeypatch.setattr("attrlib.simulator.synthesize", lambda out, **kw: seen.update(kw) or out)
    assert cli.main(["synth", "--realistic", "--out", str(tmp_path / "r")]) == 0
    assert seen["realistic"] is True
    assert cli.main(["synth", "--out", str(tmp_path / "d")]) == 0 and seen["realistic"] is False
