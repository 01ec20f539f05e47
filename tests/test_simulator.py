"""The simulated benchmark: counts, files on disk, determinism, caching, and the fingerprint's properties."""
from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from attrlib.simulator import (DEFAULT_STRENGTH, GENERATORS, HELDOUT, SEED002_MATRIX, SEED002_TEST_COUNTS,
                               SUBCLASSES, cell_counts, files_digest, synthesize)
from attrlib.simulator import content, families, stats
from attrlib.errors import ConfigError, DataError
from attrlib.io import CACHE_ENV

# seed 002's matrix at scale 1/50, written out by hand (round(7001/50)=140, round(8480/50)=170, round(3440/50)=69)
EXPECTED_TRAIN = {
    "guided_diffusion": {"horse": 140, "bed": 140},
    "latent_diffusion": {"face": 280, "bed": 140, "church": 140},
    "lsgm": {"face": 170},
    "stylegan2": {"horse": 140, "face": 140, "church": 140, "cat": 140, "car": 140},
    "stylegan3": {"face": 280, "animal_face": 140},
    "taming_transformers": {"face": 280, "cat": 69},
}
TINY = dict(scale=1 / 1000, size=32, progress=False)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _total(split_counts: dict) -> int:
    return sum(sum(row.values()) for row in split_counts.values())


def _images(root, frame=None):
    frame = pd.read_csv(root / "manifest.csv", keep_default_na=False) if frame is None else frame
    return {p: (root / p).read_bytes() for p in frame["path"]}


# ------------------------------------------------------------------------------------------------ counts
def test_biased_counts_are_seed002_matrix_at_one_fiftieth():
    counts = cell_counts()
    assert counts["train"] == EXPECTED_TRAIN
    assert _total(counts["train"]) == 2479
    # a test pool of seed 002's military-vehicle count for every subclass (training and held out)
    assert counts["pool"] == {g: {sc: n for sc in SUBCLASSES + HELDOUT} for g, n in SEED002_TEST_COUNTS.items()}
    assert _total(counts["pool"]) == 8 * 176
    for g, row in counts["train"].items():
        assert counts["val"][g] == {sc: round(0.2 * n) for sc, n in row.items()}


def test_constants_describe_seed002():
    assert set(GENERATORS) == set(SEED002_MATRIX) == set(SEED002_TEST_COUNTS)
    assert HELDOUT == ("military_vehicle",)
    assert set(SUBCLASSES) == {sc for row in SEED002_MATRIX.values() for sc in row}
    assert sum(sum(r.values()) for r in SEED002_MATRIX.values()) == 123920


def test_unbiased_counts_spread_the_same_total_over_every_cell():
    biased, unbiased = cell_counts(variant="biased"), cell_counts(variant="unbiased")
    assert _total(unbiased["train"]) == _total(biased["train"])
    cells = [unbiased["train"][g][sc] for g in GENERATORS for sc in SUBCLASSES]
    assert len(cells) == 42 and max(cells) - min(cells) <= 1
    assert unbiased["pool"] == biased["pool"]


def test_small_scale_keeps_every_cell_and_a_few_test_images():
    counts = cell_counts(1 / 1000)
    assert all(n >= 1 for row in counts["train"].values() for n in row.values())
    assert set(counts["train"]["stylegan2"]) == set(EXPECTED_TRAIN["stylegan2"])
    assert all(n >= 3 for row in counts["pool"].values() for n in row.values())


@pytest.mark.parametrize("kwargs, name", [
    (dict(variant="balanced"), "variant"), (dict(strength=-1.0), "strength"), (dict(size=30), "size"),
    (dict(scale=0), "scale"), (dict(scale=-0.1), "scale"), (dict(seed=-1), "seed"),
])
def test_bad_parameters_raise_config_error_naming_them(tmp_path, kwargs, name):
    with pytest.raises(ConfigError, match=name):
        synthesize(tmp_path / "b", **{**TINY, **kwargs})
    assert not (tmp_path / "b").exists()


# -------------------------------------------------------------------------------------------- on disk
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return synthesize(tmp_path_factory.mktemp("bench") / "tiny", seed=0, **TINY)


def test_synthesize_writes_images_masks_manifest_and_parameters(tiny):
    frame = pd.read_csv(tiny / "manifest.csv", keep_default_na=False)
    assert list(frame.columns) == ["path", "generator", "subclass", "split", "mask", "instance"]
    assert set(frame["split"]) == {"train", "val", "pool"}
    assert set(frame.loc[frame["split"] == "pool", "subclass"]) == set(SUBCLASSES + HELDOUT)
    counts = cell_counts(1 / 1000)
    for split in ("train", "val", "pool"):
        got = frame[frame["split"] == split].groupby(["generator", "subclass"]).size()
        want = pd.Series({(g, sc): n for g, row in counts[split].items() for sc, n in row.items()})
        assert got.sort_index().to_dict() == want.sort_index().to_dict()
    for _, row in frame.sample(12, random_state=0).iterrows():
        # the folder carries the labels; the name carries only the split and an index
        assert row["path"].split("/")[:2] == [row["generator"], row["subclass"]]
        img = np.asarray(Image.open(tiny / row["path"]))
        assert img.shape == (32, 32, 3) and img.dtype == np.uint8
        mask = np.asarray(Image.open(tiny / row["mask"]))
        assert mask.shape == (32, 32) and set(np.unique(mask)) <= {0, 255} and mask.max() == 255
    params = json.loads((tiny / "benchmark.json").read_text())
    assert params["scale"] == 1 / 1000 and params["size"] == 32 and params["strength"] == DEFAULT_STRENGTH
    assert params["variant"] == "biased" and params["simulated"] is True and params["generator_version"]
    assert not list(tiny.parent.glob(".tiny.*"))  # no temporary folder left behind


# Written by the code before the realistic variant existed (scale 1/1000, size 32, seed 0): the default benchmark's
# training images must stay byte-identical. benchmark.json (hashed into every run id) changed since by its note,
# when the package attrlib.benchmark became attrlib.simulator, and with the manifest in sim-5 (pools for every
# subclass, the instance column, the generator version); the images pinned here did not change.
PINNED_SHA256 = {
    "benchmark.json": "e20b24eb65ee1cc17a2e1537da5ba2d637726829d24aa0e13bca6c12332f44a7",
    "manifest.csv": "9e009e3c6d38e5ab643801ac7342fdc33d5b82c0a0055be02bede11cb1fa18c5",
    "stylegan2/car/train_00000.png": "4ae8a488a3d034d881c33f15b314a761d49db5952a5a6d1e4c6b57471d321e59",
    "_masks/stylegan2/car/train_00000.png": "a8336e359023d64f72f5d87526c43a8ed232b2ba7eca9e3d36fb398d03711a58",
}


def test_default_benchmark_bytes_are_pinned(tiny):
    got = {rel: hashlib.sha256((tiny / rel).read_bytes()).hexdigest() for rel in PINNED_SHA256}
    assert got == PINNED_SHA256


# files_digest of the whole tiny benchmark (every image and mask, manifest.csv, benchmark.json) as the code before
# the faster synthesis (issue 19: shared calibration batch, glibc keeping freed memory) wrote it: a speed-up must
# not move a single byte. Measured on the default benchmark too: benchmarks/bench_synth.py.
TINY_FILES_SHA256 = "bc7c76362e6da609b281f6c2a7cd3c2e99707a18a6c1eaf1918d569f02b403e8"


def test_every_file_of_the_benchmark_is_pinned(tiny, tmp_path):
    assert files_digest(tiny) == TINY_FILES_SHA256
    # the digest sees every file: one byte more in one mask changes it
    copy = tmp_path / "copy"
    shutil.copytree(tiny, copy)
    mask = next((copy / "_masks").rglob("*.png"))
    mask.write_bytes(mask.read_bytes() + b"\0")
    assert files_digest(copy) != TINY_FILES_SHA256


def test_same_seed_same_bytes_other_seed_other_bytes(tiny, tmp_path):
    again = synthesize(tmp_path / "again", seed=0, **TINY)
    other = synthesize(tmp_path / "other", seed=1, **TINY)
    first = _images(tiny)
    assert _images(again) == first
    assert (again / "manifest.csv").read_bytes() == (tiny / "manifest.csv").read_bytes()
    assert all(_images(other)[p] != b for p, b in list(first.items())[:20])


def test_cached_unless_a_parameter_changes(tmp_path):
    small = {**TINY, "size": 16}  # the cache, not the images: 16 px has the cheapest calibrations
    root = synthesize(tmp_path / "b", seed=3, **small)
    probe = root / "stylegan2" / "car" / "train_00000.png"
    stamp = (probe.stat().st_mtime_ns, (root / "benchmark.json").stat().st_mtime_ns)
    assert synthesize(tmp_path / "b", seed=3, **small) == root
    assert (probe.stat().st_mtime_ns, (root / "benchmark.json").stat().st_mtime_ns) == stamp
    before = probe.read_bytes()
    synthesize(tmp_path / "b", seed=3, strength=DEFAULT_STRENGTH * 2, **small)
    assert json.loads((root / "benchmark.json").read_text())["strength"] == DEFAULT_STRENGTH * 2
    assert probe.read_bytes() != before
    synthesize(tmp_path / "b", seed=3, strength=DEFAULT_STRENGTH * 2, force=True, **small)
    assert probe.stat().st_mtime_ns != stamp[0]


def test_a_calibration_is_shared_through_a_file_and_a_broken_file_is_recomputed(tmp_path, monkeypatch):
    """A calibration computed once is written under $ATTRLIB_CACHE_DIR and read back by a process that has not
    computed it (here: this one, its in-process cache cleared); a file that does not parse, or that holds
    another key's arguments, is recomputed and rewritten. Images stay byte-identical: the pinned digests above."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    args = ("lsgm", 16, "", 0.0)
    families.calibration.cache_clear()
    true = families.calibration(*args)
    [path] = list(tmp_path.glob("calibration-*/calibration-*.json"))
    assert json.loads(path.read_text()) == {"args": list(args), "value": list(true)}
    path.write_text(json.dumps({"args": list(args), "value": [1.5, 2.5]}))  # what "another process" computed
    families.calibration.cache_clear()
    assert families.calibration("lsgm", 16) == (1.5, 2.5)  # read, not recomputed (keywords and defaults: one key)
    for broken in ("{not json", json.dumps({"args": ["lsgm", 32, "", 0.0], "value": [9.0, 9.0]})):
        path.write_text(broken)
        families.calibration.cache_clear()
        assert families.calibration(*args) == true
        assert json.loads(path.read_text())["value"] == list(true)
    # pipeline_calibration's one float, read back as such; a spread or strength given as an int is the same key
    families.pipeline_calibration.cache_clear()
    kappa = families.pipeline_calibration("lsgm", 16, spread=0, strength=1)
    [kpath] = list(tmp_path.glob("calibration-*/pipeline_calibration-*.json"))
    assert json.loads(kpath.read_text())["args"] == ["lsgm", 16, "", 0.0, 1.0] and isinstance(kappa, float)
    kpath.write_text(json.dumps({"args": ["lsgm", 16, "", 0.0, 1.0], "value": 0.25}))
    families.pipeline_calibration.cache_clear()
    assert families.pipeline_calibration("lsgm", 16, "", 0.0, 1.0) == 0.25
    families.calibration.cache_clear()  # the tampered values leave no trace in this process
    families.pipeline_calibration.cache_clear()


def test_refuses_to_replace_a_folder_that_is_not_a_benchmark(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "photo.png").write_bytes(b"not mine to delete")
    with pytest.raises(DataError, match="not a benchmark"):
        synthesize(tmp_path / "mine", **TINY)
    assert (tmp_path / "mine" / "photo.png").exists()


# ------------------------------------------------------------------------------------- the fingerprints
@pytest.fixture(scope="module")
def clean():
    rng = np.random.default_rng(7)
    return torch.cat([content.draw(sc, 6, 64, rng)[0] for sc in SUBCLASSES + HELDOUT])


def test_strength_zero_leaves_no_family_residual(clean):
    rendered = [families.render(g, clean, 0.0, np.random.default_rng(g_i)) for g_i, g in enumerate(GENERATORS)]
    expected = (clean * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    for img in rendered:
        assert np.array_equal(img, expected)


def test_every_family_is_equally_loud_high_frequency_and_brightness_neutral(clean):
    ref = (clean * 255).round().permute(0, 2, 3, 1).numpy()
    for g in GENERATORS:
        r = families.residual(g, clean, np.random.default_rng(0))
        assert 0.7 < float(r.pow(2).mean().sqrt()) < 1.3, g            # unit RMS by calibration
        thumb = torch.nn.functional.avg_pool2d(r, 8)
        assert float(thumb.pow(2).mean().sqrt()) < 0.35, g             # little below 1/8 cycles/pixel
        x = families.render(g, clean, DEFAULT_STRENGTH, np.random.default_rng(0)).astype(np.float64)
        assert abs(x.mean() - ref.mean()) < 0.3, g                      # grey levels
        # guided_diffusion's high-frequency deficit lowers the contrast a little; 1 level of ~50 is no cue
        assert abs(x.std() - ref.std()) < 1.0, g
        assert not np.array_equal(x, ref)


def test_families_differ_from_each_other(clean):
    rs = {g: families.residual(g, clean, np.random.default_rng(0)) for g in GENERATORS}
    for i, a in enumerate(GENERATORS):
        for b in GENERATORS[i + 1:]:
            corr = float((rs[a] * rs[b]).mean() / (rs[a].std() * rs[b].std()))
            assert corr < 0.7, (a, b, corr)


def test_content_is_the_low_frequency_shortcut_and_the_generator_is_not(tmp_path):
    root = synthesize(tmp_path / "unbiased", scale=1 / 250, size=32, variant="unbiased", progress=False)
    result = stats.thumbnail_check(root)
    assert result["n_val"] >= 80
    assert result["subclass_accuracy"] >= 0.9
    assert result["generator_accuracy"] <= 0.35          # chance is 1/6; a real leak scores far higher
    pixels = stats.pixel_stats(root)
    assert set(pixels.index) == set(GENERATORS)
    assert pixels["mean"].max() - pixels["mean"].min() < 6.0   # ~100 images of random content per generator
    spectra = stats.residual_spectra(root, per_generator=40)
    assert set(spectra) == set(GENERATORS) and all(s.shape == (32, 32) for s in spectra.values())
    assert stats.spectra_distinctness(spectra).to_numpy()[~np.eye(6, dtype=bool)].min() > 0


def test_image_statistics_decode_through_the_data_layer_and_take_common_centre_crops(tmp_path):
    """A folder of mixed sizes and modes (a user's): every image is decoded by attrlib.data.load_image and
    centre-cropped to the size all share, so spectra have one shape and the statistics need no equal sizes."""
    rng = np.random.default_rng(0)
    rows = []
    for i, (gen, size, mode) in enumerate([("a", (40, 36), "RGB"), ("a", (32, 48), "L"), ("b", (36, 36), "RGBA"),
                                            ("b", (50, 34), "P")]):
        arr = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        image = Image.fromarray(arr).convert(mode)
        path = tmp_path / f"{i}.png"
        image.save(path)
        rows.append(dict(path=str(path), generator=gen, subclass="x", split="train"))
    frame = pd.DataFrame(rows)
    x = stats.load_images(frame["path"])
    assert x.shape == (4, 32, 34, 3) and x.dtype == np.uint8
    first = np.asarray(Image.open(tmp_path / "0.png").convert("RGB"))
    assert np.array_equal(x[0], first[4:36, 1:35])  # the centre crop of a 40x36 image
    spectra = stats.residual_spectra(frame, per_generator=None)
    assert {s.shape for s in spectra.values()} == {(32, 34)}
    assert set(stats.pixel_stats(frame).index) == {"a", "b"}
