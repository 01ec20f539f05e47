"""The data layer on valid input: decoding of every image mode, discovery, splits, bias table, datasets.

Every test builds its own tiny folder with PIL under tmp_path, so a failure points at one behaviour.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from attrlib.data import (ImageDataset, format_bias_table, load_image, load_study_data, verify_images)
from attrlib.errors import DataError

RNG = np.random.default_rng(0)


def rgb(h: int, w: int) -> np.ndarray:
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


def make_folder(root: Path, cells: dict, h: int = 24, w: int = 28, masks: bool = False, ext: str = ".png") -> Path:
    """cells: {(generator, subclass): n_images}; optional masks in _masks/ (mask = the image's red channel)."""
    for (g, s), n in cells.items():
        (root / g / s).mkdir(parents=True, exist_ok=True)
        for k in range(n):
            a = rgb(h, w)
            Image.fromarray(a).save(root / g / s / f"{k:03d}{ext}")
            if masks:
                (root / "_masks" / g / s).mkdir(parents=True, exist_ok=True)
                Image.fromarray(a[:, :, 0]).save(root / "_masks" / g / s / f"{k:03d}.png")
    return root


CELLS = {("sg2", "horse"): 5, ("sg2", "face"): 5, ("ldm", "face"): 6, ("ldm", "church"): 4,
         ("sg2", "military_vehicle"): 5, ("ldm", "military_vehicle"): 5}


# --- decoding -------------------------------------------------------------------------------------------

def _mode_cases():
    base = rgb(9, 11)
    g = base[:, :, 0]
    return {
        "rgb_png": (lambda p: Image.fromarray(base).save(p), ".png", base),
        "rgba_png": (lambda p: Image.fromarray(np.dstack([base, np.full((9, 11), 7, np.uint8)])).save(p), ".png", base),
        "l_png": (lambda p: Image.fromarray(g).save(p), ".png", np.repeat(g[:, :, None], 3, 2)),
        "la_png": (lambda p: Image.fromarray(g).convert("LA").save(p), ".png", np.repeat(g[:, :, None], 3, 2)),
        "palette_png": (lambda p: Image.fromarray(base).quantize(16).save(p), ".png", None),
        "one_bit_png": (lambda p: Image.fromarray(g > 127).save(p), ".png",
                        np.repeat(np.where(g > 127, 255, 0).astype(np.uint8)[:, :, None], 3, 2)),
        "cmyk_jpeg": (lambda p: Image.fromarray(base).convert("CMYK").save(p, quality=95), ".jpg", None),
        "rgb_jpeg": (lambda p: Image.fromarray(base).save(p, quality=95), ".JPEG", None),
        "bmp": (lambda p: Image.fromarray(base).save(p), ".bmp", base),
        "tiff": (lambda p: Image.fromarray(base).save(p), ".tif", base),
        "webp_lossless": (lambda p: Image.fromarray(base).save(p, lossless=True), ".webp", base),
    }


@pytest.mark.parametrize("case", list(_mode_cases()))
def test_load_image_any_mode_gives_hxwx3_uint8(tmp_path, case):
    write, ext, expected = _mode_cases()[case]
    path = tmp_path / f"img{ext}"
    write(path)
    a = load_image(path)
    assert a.shape == (9, 11, 3) and a.dtype == np.uint8
    if expected is not None:
        np.testing.assert_array_equal(a, expected)


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_16_bit_images_are_scaled_not_clipped(tmp_path, ext):
    values = np.array([[0, 257, 1000, 32896], [40000, 60000, 65280, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / f"x{ext}")
    a = load_image(tmp_path / f"x{ext}")
    expected = np.rint(values / 257.0).astype(np.uint8)
    assert a.shape == (2, 4, 3)
    np.testing.assert_array_equal(a[:, :, 0], expected)
    np.testing.assert_array_equal(a[:, :, 1], expected)


def test_32_bit_integer_mode_i_is_scaled(tmp_path):
    values = np.array([[0, 65535, 257 * 100]], dtype=np.int32)
    Image.fromarray(values, mode="I").save(tmp_path / "x.tif")
    np.testing.assert_array_equal(load_image(tmp_path / "x.tif")[0, :, 0], [0, 255, 100])
    Image.fromarray(np.array([[0, 7, 255]], dtype=np.int32), mode="I").save(tmp_path / "y.tif")
    np.testing.assert_array_equal(load_image(tmp_path / "y.tif")[0, :, 0], [0, 7, 255])  # 8-bit data kept


# --- discovery and splits -------------------------------------------------------------------------------

def test_folder_layout_labels_ignored_folders_and_extensions(tmp_path):
    root = make_folder(tmp_path / "d", CELLS, masks=True)
    (root / "sg2" / "horse" / "deeper" / "more").mkdir(parents=True)
    Image.fromarray(rgb(24, 28)).save(root / "sg2" / "horse" / "deeper" / "more" / "UPPER.PnG")
    (root / ".cache" / "x" / "y").mkdir(parents=True)
    Image.fromarray(rgb(8, 8)).save(root / ".cache" / "x" / "y" / "a.png")
    (root / "sg2" / "_thumbs").mkdir()
    Image.fromarray(rgb(8, 8)).save(root / "sg2" / "_thumbs" / "a.png")
    (root / "benchmark.json").write_text("{}")
    (root / "sg2" / "horse" / "notes.txt").write_text("not an image")
    (root / "sg2" / "horse" / "._000.png").write_bytes(b"\x00\x05\x16\x07")  # macOS resource fork
    data = load_study_data(root)
    f = data.frame
    assert list(f.columns) == ["path", "generator", "subclass", "split", "ft_split", "mask", "instance", "duplicate_group"]
    assert len(f) == sum(CELLS.values()) + 1
    assert all(os.path.isabs(p) for p in f["path"])
    assert data.generators == ["ldm", "sg2"]
    assert data.subclasses == ["church", "face", "horse"]
    assert data.heldout == ("military_vehicle",)
    deep = f[f["path"].str.endswith("UPPER.PnG")].iloc[0]
    assert (deep.generator, deep.subclass) == ("sg2", "horse")
    assert deep["mask"] == ""  # no mask for that one
    with_mask = f[f["path"].str.endswith("horse/000.png")].iloc[0]
    assert with_mask["mask"] == str(root / "_masks" / "sg2" / "horse" / "000.png")
    assert set(f.loc[f.subclass == "military_vehicle", "split"]) == {"test"}
    assert set(f.loc[f.subclass != "military_vehicle", "split"]) <= {"train", "val"}


def test_val_carved_per_cell_deterministic_and_keeps_a_training_image(tmp_path):
    cells = {("a", "x"): 10, ("a", "y"): 1, ("a", "z"): 2, ("b", "x"): 7, ("a", "h"): 3, ("b", "h"): 3}
    root = make_folder(tmp_path / "d", cells, h=8, w=8)
    d1 = load_study_data(root, heldout="h", val_fraction=0.3, seed=1)
    d2 = load_study_data(root, heldout=["h"], val_fraction=0.3, seed=1)
    d3 = load_study_data(root, heldout="h", val_fraction=0.3, seed=2)
    pd.testing.assert_frame_equal(d1.frame, d2.frame)
    counts = d1.frame[d1.frame.split != "test"].groupby(["generator", "subclass", "split"]).size().unstack(fill_value=0)
    assert counts.loc[("a", "x"), "val"] == 3 and counts.loc[("a", "x"), "train"] == 7
    assert counts.loc[("a", "y"), "val"] == 0 and counts.loc[("a", "y"), "train"] == 1
    assert counts.loc[("a", "z"), "train"] >= 1
    assert counts.loc[("b", "x"), "val"] == 2
    assert set(d1.split("val")["path"]) != set(d3.split("val")["path"])  # the seed matters


def test_ft_split_is_80_20_per_generator_and_ignores_the_run_seed(tmp_path):
    cells = {("a", "x"): 2, ("b", "x"): 2, ("a", "mv"): 10, ("b", "mv"): 5}
    root = make_folder(tmp_path / "d", cells, h=8, w=8)
    d0 = load_study_data(root, heldout="mv", seed=0)
    d9 = load_study_data(root, heldout="mv", seed=9)
    ft = d0.frame[d0.frame.split == "test"].groupby(["generator", "ft_split"]).size()
    assert ft[("a", "ft_test")] == 2 and ft[("a", "ft_train")] == 8
    assert ft[("b", "ft_test")] == 1 and ft[("b", "ft_train")] == 4
    assert set(d0.frame.loc[d0.frame.split != "test", "ft_split"]) == {""}
    assert list(d0.split("ft_test")["path"]) == list(d9.split("ft_test")["path"])
    assert len(d0.split("ft_train")) + len(d0.split("ft_test")) == len(d0.split("test"))


def test_bias_table_shows_zero_cells_in_sorted_order(tmp_path):
    root = make_folder(tmp_path / "d", CELLS, h=8, w=8)
    data = load_study_data(root, val_fraction=0.2)
    table = data.bias_table()
    assert list(table.index) == ["ldm", "sg2"]
    assert list(table.columns) == ["church", "face", "horse"]
    assert table.loc["ldm", "horse"] == 0 and table.loc["sg2", "church"] == 0
    assert table.values.sum() == len(data.split("train"))
    everything = data.bias_table("all")
    assert list(everything.columns) == ["church", "face", "horse", "military_vehicle"]
    assert everything.loc["ldm", "face"] == 6 and everything.loc["sg2", "military_vehicle"] == 5
    text = format_bias_table(everything)
    assert "total" in text and "military_vehicle" in text and str(len(data.frame)) in text
    assert list(data.bias_table("test").columns) == ["military_vehicle"]


def test_manifest_with_splits_masks_and_direct_csv_path(tmp_path):
    root = make_folder(tmp_path / "d", CELLS, h=8, w=8, masks=True)
    rows = []
    for (g, s), n in CELLS.items():
        for k in range(n):
            split = "test" if s == "military_vehicle" else ("val" if k == 0 else "train")
            mask = f"_masks/{g}/{s}/{k:03d}.png" if k % 2 == 0 else ""
            rows.append(dict(path=f"{g}/{s}/{k:03d}.png", generator=g, subclass=s, split=split, mask=mask))
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    data = load_study_data(root)  # manifest.csv in the folder wins over the folder walk
    assert len(data.frame) == len(rows)
    assert data.frame["split"].tolist() == [r["split"] for r in rows]  # given splits are kept
    assert data.frame["mask"].iloc[0] == str(root / "_masks" / "sg2" / "horse" / "000.png")
    assert data.frame["mask"].iloc[1] == ""
    # a CSV given directly, in another folder, with a subset of rows and no split column
    sub = pd.DataFrame(rows)[["path", "generator", "subclass"]]
    sub["path"] = "d\\" + sub["path"].str.replace("/", "\\")  # written on Windows
    sub.to_csv(tmp_path / "mine.csv", index=False)
    direct = load_study_data(tmp_path / "mine.csv")
    assert direct.frame["path"].iloc[0] == str(root / "sg2" / "horse" / "000.png")
    assert set(direct.frame["split"]) == {"train", "val", "test"}


def test_a_manifest_is_validated_once_per_content_and_each_caller_gets_its_own_frame(tmp_path, monkeypatch):
    """discover() keeps what read_manifest found for an unchanged CSV (a notebook reads the benchmark's manifest
    for every run it loads); an edit of the same size is read again, and a caller's change to its frame is its own."""
    from attrlib.data import sources

    root = make_folder(tmp_path / "d", CELLS, h=8, w=8)
    rows = [dict(path=f"{g}/{s}/{k:03d}.png", generator=g, subclass=s) for (g, s), n in CELLS.items() for k in range(n)]
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    reads = []
    real = sources.read_manifest
    monkeypatch.setattr(sources, "read_manifest", lambda p, on_bad="raise": reads.append(p) or real(p, on_bad))
    first = sources.discover(root)
    first.frame.loc[0, "generator"] = "changed by this caller"
    again = sources.discover(root)
    assert len(reads) == 1 and again.frame["generator"].iloc[0] == rows[0]["generator"]
    assert again.frame.drop(index=0).equals(first.frame.drop(index=0))
    edited = pd.DataFrame(rows)
    edited.loc[0, "subclass"] = "HORSE" if rows[0]["subclass"] == "horse" else rows[0]["subclass"].upper()
    edited.to_csv(root / "manifest.csv", index=False)  # same size, same inode: only the content differs
    assert sources.discover(root).frame["subclass"].iloc[0] == edited.loc[0, "subclass"] and len(reads) == 2
    assert sources.discover(root, on_bad="skip") is not None and len(reads) == 3  # another on_bad: read again


def test_manifest_split_does_not_depend_on_row_order(tmp_path):
    root = make_folder(tmp_path / "d", CELLS, h=8, w=8)
    rows = pd.DataFrame([dict(path=f"{g}/{s}/{k:03d}.png", generator=g, subclass=s)
                         for (g, s), n in CELLS.items() for k in range(n)])
    rows.to_csv(tmp_path / "a.csv", index=False)
    rows.iloc[::-1].to_csv(tmp_path / "b.csv", index=False)
    (tmp_path / "a.csv").rename(root / "a.csv")
    (tmp_path / "b.csv").rename(root / "b.csv")
    a = load_study_data(root / "a.csv").frame.sort_values("path").reset_index(drop=True)
    b = load_study_data(root / "b.csv").frame.sort_values("path").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)


# --- datasets -------------------------------------------------------------------------------------------

@pytest.fixture()
def study(tmp_path):
    return load_study_data(make_folder(tmp_path / "d", CELLS, masks=True))


def test_item_contract_labels_and_groups(study):
    frame = study.frame
    ds = ImageDataset(frame, study, policy="crop", size=16, train=False, with_mask=True)
    assert ds.cached and len(ds) == len(frame)
    n_sub = len(study.subclasses)
    for i in (0, len(frame) - 1, 7):
        item = ds[i]
        assert item["x"].dtype == torch.float32 and item["x"].shape == (3, 16, 16)
        assert 0.0 <= item["x"].min() and item["x"].max() <= 1.0
        assert item["mask"].shape == (1, 16, 16) and item["mask"].dtype == torch.float32
        row = frame.iloc[i]
        assert item["index"] == i
        assert item["generator"] == study.generators.index(row.generator)
        if row.subclass in study.heldout:
            assert item["subclass"] == -1 and item["group"] == -1
        else:
            assert item["subclass"] == study.subclasses.index(row.subclass)
            assert item["group"] == item["generator"] * n_sub + item["subclass"]


@pytest.mark.parametrize("cache", ["memory", "stream"])
def test_crop_does_not_resample_and_mask_follows_the_image(study, cache):
    frame = study.split("train")
    ev = ImageDataset(frame, study, policy="crop", size=16, train=False, with_mask=True, cache=cache)
    for i in range(3):
        pixels = load_image(frame.path[i])
        top, left = (24 - 16) // 2, (28 - 16) // 2
        want = torch.from_numpy(pixels[top:top + 16, left:left + 16]).permute(2, 0, 1).float() / 255
        assert torch.equal(ev[i]["x"], want)
        assert torch.equal(ev[i]["mask"][0], ev[i]["x"][0])  # the mask is the red channel: same crop
    tr = ImageDataset(frame, study, policy="crop", size=16, train=True, with_mask=True, cache=cache)
    pixels = torch.from_numpy(load_image(frame.path[0])).permute(2, 0, 1).float() / 255
    offsets = set()
    for _ in range(12):
        item = tr[0]
        x = item["x"]
        assert torch.equal(item["mask"][0], x[0])
        found = [(t, l) for t in range(24 - 16 + 1) for l in range(28 - 16 + 1)
                 if torch.equal(pixels[:, t:t + 16, l:l + 16], x)]
        assert len(found) == 1
        offsets.add(found[0])
    assert len(offsets) > 1  # random crops move


def test_random_crops_are_reproducible_with_seeded_loader(study):
    ds = ImageDataset(study.split("train"), study, policy="crop", size=12, train=True)

    def run(seed):
        torch.manual_seed(seed)
        loader = DataLoader(ds, batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(seed))
        return [(b["x"].clone(), b["index"].clone()) for b in loader]

    a, b, c = run(3), run(3), run(4)
    assert all(torch.equal(x1, x2) and torch.equal(i1, i2) for (x1, i1), (x2, i2) in zip(a, b))
    assert not all(torch.equal(x1, x2) for (x1, _), (x2, _) in zip(a, c))
    batch = a[0]
    assert batch[0].shape == (8, 3, 12, 12)


def test_resize_gives_requested_size_and_matches_bilinear_antialias(study):
    frame = study.split("val")
    for cache in ("memory", "stream"):
        ds = ImageDataset(frame, study, policy="resize", size=20, train=True, with_mask=True, cache=cache)
        item = ds[0]
        assert item["x"].shape == (3, 20, 20) and item["mask"].shape == (1, 20, 20)
        src = torch.from_numpy(load_image(frame.path[0])).permute(2, 0, 1)
        want = TF.resize(src, [20, 20], interpolation=InterpolationMode.BILINEAR, antialias=True).float() / 255
        assert torch.equal(item["x"], want)
        assert torch.equal(item["x"], ds[0]["x"])  # resize is deterministic, also when train=True
    big = ImageDataset(frame, study, policy="resize", size=40, train=False)
    assert big[0]["x"].shape == (3, 40, 40)


def test_small_images_are_padded_reflect_then_zero(tmp_path):
    root = tmp_path / "d"
    for g in ("a", "b"):
        (root / g / "x").mkdir(parents=True)
        (root / g / "h").mkdir(parents=True)
    small = rgb(10, 12)
    tiny = rgb(3, 3)
    Image.fromarray(small).save(root / "a" / "x" / "small.png")
    Image.fromarray(tiny).save(root / "b" / "x" / "tiny.png")
    Image.fromarray(rgb(30, 30)).save(root / "a" / "h" / "big.png")
    Image.fromarray(rgb(30, 30)).save(root / "b" / "h" / "big.png")
    data = load_study_data(root, heldout="h")
    train = data.split("train")
    ds = ImageDataset(train, data, policy="crop", size=16, train=False)
    assert ds._stack is not None  # both padded to 16x16: one stack
    assert ImageDataset(data.frame, data, policy="crop", size=16)._items is not None  # mixed sizes: a list
    by_name = {Path(p).name: i for i, p in enumerate(train.path)}
    x = ds[by_name["small.png"]]["x"]
    want = np.pad(small, ((3, 3), (2, 2), (0, 0)), mode="reflect")
    assert torch.equal(x, torch.from_numpy(want).permute(2, 0, 1).float() / 255)
    t = ds[by_name["tiny.png"]]["x"]
    assert t.shape == (3, 16, 16)
    assert torch.equal(t[:, 6:9, 6:9], torch.from_numpy(tiny).permute(2, 0, 1).float() / 255)
    assert t[:, :6].abs().sum() == 0 and t[:, 9:].abs().sum() == 0  # too small to mirror: zeros
    # training crops of padded images stay valid and identical between cached and streamed datasets
    streamed = ImageDataset(train, data, policy="crop", size=16, train=True, cache="stream")
    cached = ImageDataset(train, data, policy="crop", size=16, train=True, cache="memory")
    torch.manual_seed(0)
    s = [streamed[i]["x"] for i in range(len(train))]
    torch.manual_seed(0)
    c = [cached[i]["x"] for i in range(len(train))]
    assert all(torch.equal(u, v) for u, v in zip(s, c))


def test_cached_items_do_no_decoding(study, monkeypatch):
    import attrlib.data.datasets as dsmod

    ds = ImageDataset(study.split("train"), study, policy="crop", size=16, cache="auto")
    assert ds.cached and ds._stack is not None and ds._stack.dtype == torch.uint8
    assert ds._stack.shape == (len(ds), 3, 24, 28)

    def boom(*a, **k):
        raise AssertionError("decoded an image after the cache was filled")

    monkeypatch.setattr(dsmod, "load_image", boom)
    for i in range(len(ds)):
        ds[i]


def test_auto_cache_streams_above_the_limit(study, monkeypatch):
    import attrlib.data.datasets as dsmod

    monkeypatch.setattr(dsmod, "CACHE_LIMIT_BYTES", 100)
    ds = ImageDataset(study.split("train"), study, policy="crop", size=16)
    assert not ds.cached and ds[0]["x"].shape == (3, 16, 16)


def test_the_memory_budget_is_shared_by_every_dataset_of_the_process(study, monkeypatch):
    import gc

    import attrlib.data.datasets as dsmod

    one = ImageDataset(study.split("train"), study, policy="crop", size=16, cache="stream").estimated_bytes()
    monkeypatch.setattr(dsmod, "CACHE_LIMIT_BYTES", int(1.5 * one) + dsmod._held["bytes"])
    first = ImageDataset(study.split("train"), study, policy="crop", size=16)
    second = ImageDataset(study.split("train"), study, policy="crop", size=16)
    assert first.cached and not second.cached  # together they would pass the budget
    del first
    gc.collect()
    assert ImageDataset(study.split("train"), study, policy="crop", size=16).cached  # freed, held again


def test_verify_images_passes_valid_data(study):
    good, skipped = verify_images(study.frame, progress=False)
    assert skipped == [] and len(good) == len(study.frame)


def test_split_names(study):
    assert len(study.split("train")) + len(study.split("val")) + len(study.split("test")) == len(study.frame)
    with pytest.raises(DataError, match="valid splits"):
        study.split("training")


def test_workers_give_the_same_crops_as_a_seeded_run(study):
    ds = ImageDataset(study.split("train"), study, policy="crop", size=12, train=True)

    def run():
        loader = DataLoader(ds, batch_size=16, shuffle=True, num_workers=1,
                            generator=torch.Generator().manual_seed(5))
        return [b["x"] for b in loader]

    assert all(torch.equal(u, v) for u, v in zip(run(), run()))


def test_empty_frame_gives_an_empty_dataset(study):
    ds = ImageDataset(study.frame.iloc[:0], study, policy="crop", size=8)
    assert len(ds) == 0


def test_labels_differing_only_in_case_warn(tmp_path):
    root = make_folder(tmp_path / "d", {("a", "Horse"): 2, ("a", "horse"): 2, ("b", "horse"): 2,
                                        ("a", "military_vehicle"): 1, ("b", "military_vehicle"): 1}, h=8, w=8)
    with pytest.warns(UserWarning, match=r"subclass labels that differ only in case.*\['Horse', 'horse'\]"):
        load_study_data(root)


# --- the data fingerprint (part of a run's identity) ----------------------------------------------------

def _fresh_fingerprint(root, monkeypatch):
    """data_fingerprint as a new process computes it (empty memos), counting the files it reads."""
    from attrlib.data import fingerprint
    monkeypatch.setattr(fingerprint, "_MEMO", {})
    monkeypatch.setattr(fingerprint, "_FOLDERS", {})
    reads = []
    real = fingerprint.file_digest
    monkeypatch.setattr(fingerprint, "file_digest", lambda p: reads.append(p) or real(p))
    return fingerprint.data_fingerprint(root), len(reads)


def _age(root, seconds):
    """Set every file's modification time `seconds` in the past (a file modified just now is never cached)."""
    import time
    t = time.time_ns() - int(seconds * 1e9)
    for p in Path(root).rglob("*"):
        if p.is_file():
            os.utime(p, ns=(t, t))


def test_a_copy_with_new_modification_times_keeps_the_fingerprint_and_a_changed_byte_does_not(tmp_path, monkeypatch):
    import shutil
    monkeypatch.setenv("ATTRLIB_CACHE_DIR", str(tmp_path / "cache"))
    src = make_folder(tmp_path / "src", CELLS, h=8, w=8)
    _age(src, 3600)
    first, read = _fresh_fingerprint(src, monkeypatch)
    assert first.startswith("files:") and read == sum(CELLS.values())
    again, read = _fresh_fingerprint(src, monkeypatch)          # a new process: the digests come from the cache
    assert (again, read) == (first, 0)
    copy = shutil.copytree(src, tmp_path / "copy", copy_function=shutil.copyfile)   # bytes only: new mtimes
    _age(copy, 7200)
    image = copy / "sg2" / "horse" / "000.png"
    assert image.stat().st_mtime_ns != (src / "sg2" / "horse" / "000.png").stat().st_mtime_ns
    assert _fresh_fingerprint(copy, monkeypatch)[0] == first
    old = image.stat().st_mtime_ns
    data = bytearray(image.read_bytes())                        # same size, one byte changed, the old mtime put back
    data[-5] ^= 1
    image.write_bytes(bytes(data))
    os.utime(image, ns=(old, old))
    changed, read = _fresh_fingerprint(copy, monkeypatch)
    assert changed != first and read == 1                       # the status-change time gives it away; only it is read
    (copy / "sg2" / "horse" / "000.png").rename(copy / "sg2" / "horse" / "zzz.png")
    from attrlib.data import data_fingerprint
    assert data_fingerprint(copy) not in (first, changed)       # in this process too: its folder changed


def test_the_fingerprint_survives_a_damaged_or_unwritable_cache_and_never_caches_a_file_just_modified(tmp_path,
                                                                                                   monkeypatch):
    from attrlib.data import fingerprint
    src = make_folder(tmp_path / "src", CELLS, h=8, w=8)
    n = sum(CELLS.values())
    monkeypatch.setenv("ATTRLIB_CACHE_DIR", str(tmp_path / "cache"))
    expected, read = _fresh_fingerprint(src, monkeypatch)       # files written a moment ago: "racy"
    assert read == n and _fresh_fingerprint(src, monkeypatch) == (expected, n)   # so not cached
    _age(src, 3600)
    assert _fresh_fingerprint(src, monkeypatch) == (expected, n)
    assert _fresh_fingerprint(src, monkeypatch) == (expected, 0)
    for damaged in ("[]", "null", "{not json", '{"sg2/horse/000.png": [1, 2]}'):
        fingerprint._cache_path(src.resolve()).write_text(damaged)
        got, read = _fresh_fingerprint(src, monkeypatch)
        assert got == expected and read >= n - 1, damaged
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("x")
    monkeypatch.setenv("ATTRLIB_CACHE_DIR", str(blocker))       # its digests folder cannot be made
    assert _fresh_fingerprint(src, monkeypatch) == (expected, n)
