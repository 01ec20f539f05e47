"""What real folders bring and the study must handle (issue 17), on tiny folders built here: near-duplicate
groups kept whole by every split, JPEG history in lossless files, rotations that run without a generator left
untrained, validation subclasses that need coverage, and balanced accuracy with its floors."""
from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy.ndimage import gaussian_filter

from attrlib.cli import main
from attrlib.data import ShortcutWarning, choose_val_subclass, eligible_rotations, load_study_data, shortcut_audit
from attrlib.data.pixels import JPEG_HISTORY, blockiness, near_duplicate_groups, perceptual_hash
from attrlib.errors import DataError
from attrlib.evaluation.metrics import floors, run_metrics

SIZE = 48


def smooth(rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """A natural-looking image: smoothed noise plus fine grain (structure for the hash, texture for JPEG)."""
    a = gaussian_filter(rng.normal(size=(size, size, 3)), (3, 3, 0))
    a = (a - a.min()) / (a.max() - a.min()) * 200 + 25 + rng.normal(0, 4, (size, size, 3))
    return np.clip(a, 0, 255).astype(np.uint8)


def jpeg_history(a: np.ndarray, quality: int = 75) -> np.ndarray:
    """The pixels of `a` after one JPEG round trip (what a PNG tile cut from a JPEG grid holds)."""
    buffer = io.BytesIO()
    Image.fromarray(a).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


def near_copy(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.clip(a.astype(int) + rng.integers(-2, 3, a.shape), 0, 255).astype(np.uint8)


def save(root, gen, sub, name, a) -> None:
    (root / gen / sub).mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(root / gen / sub / f"{name}.png")


def make_duplicates_folder(root, seed: int = 0):
    """3 generators x subclasses x, y (training) and h (held out), 12 images a cell and near-copies of two of
    them (3 and 2 copies: a third of the images); one training image of g0 is a near-copy of a held-out one."""
    rng = np.random.default_rng(seed)
    for g in ("g0", "g1", "g2"):
        for sub in ("x", "y", "h"):
            for k in range(12):
                base = smooth(rng)
                for c in range({0: 3, 1: 2}.get(k, 1)):
                    save(root, g, sub, f"{k}_{c}", near_copy(base, rng))
                if g == "g0" and sub == "h" and k == 0:
                    save(root, g, "x", "copy_of_h0", near_copy(base, rng))
    return root


def test_perceptual_hash_finds_near_copies_and_only_them():
    rng = np.random.default_rng(1)
    a, b = smooth(rng), smooth(rng)
    hashes = [perceptual_hash(x) for x in (a, near_copy(a, rng), b, jpeg_history(b, 60), np.full((SIZE, SIZE, 3), 9, np.uint8))]
    assert hashes[-1] is None  # a flat image has no hash: it is no one's near-duplicate
    assert list(near_duplicate_groups(hashes)) == [0, 0, 1, 1, 2]


def test_near_duplicate_groups_never_straddle_a_split(tmp_path):
    root = make_duplicates_folder(tmp_path / "d")
    data = load_study_data(root, heldout="h", val_fraction=0.4)
    assert data.groups_from == "detected (perceptual hash)"
    f = data.frame
    sizes = f.groupby("duplicate_group").size()
    assert (sizes > 1).sum() == 3 * 3 * 2 and sizes.max() == 3  # the near-copies were found, and only they
    sides = f.groupby("duplicate_group")["split"].nunique()
    assert (sides == 1).all(), f[f.duplicate_group.isin(sides[sides > 1].index)]
    assert set(f.split) == {"train", "val", "test"}  # groups went to validation, too
    test = f[f.split == "test"]
    assert (test.groupby("duplicate_group")["ft_split"].nunique() == 1).all()
    assert set(test.ft_split) == {"ft_train", "ft_test"}
    # the training copy of a held-out image is set aside, with the reason, not trained on
    aside = data.set_aside
    assert list(aside.path.map(lambda p: p.rsplit("/", 1)[-1])) == ["copy_of_h0.png"]
    assert "near-duplicate of an image in the test split" in aside.aside[0]
    # without groups, the near-copies straddle train and val
    plain = load_study_data(root, heldout="h", val_fraction=0.4, groups="none")
    assert plain.groups_from == "none" and len(plain.set_aside) == 0
    names = plain.frame.assign(base=plain.frame.path.str.extract(r"/(g\d/[xy]/\d)_\d\.png$")[0]).dropna()
    assert (names.groupby("base")["split"].nunique() > 1).any()


def test_groups_that_hold_most_of_a_folder_are_look_alikes_and_not_used(tmp_path):
    rng = np.random.default_rng(4)
    bases = [smooth(rng) for _ in range(2)]
    for g in ("g0", "g1", "g2"):
        for sub in ("x", "y", "h"):
            for k in range(4):
                save(tmp_path, g, sub, str(k), near_copy(bases[k % 2], rng))  # one of two layouts, as synthetic content
    with pytest.warns(UserWarning, match="look-alike content rather than copies"):
        data = load_study_data(tmp_path, heldout="h")
    assert data.groups_from.startswith("none (detected groups cover 100%") and len(data.set_aside) == 0
    with pytest.raises(DataError, match="no training images"):   # asked for: every training image joins a test one
        load_study_data(tmp_path, heldout="h", groups="detect")


def test_a_manifest_group_column_is_used_and_a_contradiction_raises(tmp_path):
    root = make_duplicates_folder(tmp_path / "d")
    # a group per generator and image number over the training subclasses x and y: it spans both
    rows = [{"path": str(p.relative_to(root)), "generator": p.parts[-3], "subclass": p.parts[-2],
             "group": p.parts[-3] + p.stem.split("_")[0] + ("h" if p.parts[-2] == "h" else "")}
            for p in sorted(root.rglob("*.png"))]
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    data = load_study_data(root, heldout="h", val_fraction=0.4)
    assert data.groups_from == "manifest" and len(data.set_aside) == 0
    training = data.frame[data.frame.split.isin(["train", "val"])]
    named = training.assign(name=training.path.map(lambda p: p.rsplit("/", 3)[-3] + p.rsplit("/", 1)[-1].split("_")[0]))
    assert named.groupby("name")["subclass"].nunique().max() == 2
    assert (named.groupby("name")["split"].nunique() == 1).all() and set(named.split) == {"train", "val"}
    first, second = [i for i, r in enumerate(rows) if r["subclass"] == "x"][:2]
    rows[first]["split"], rows[second]["split"] = "train", "val"
    rows[second]["group"] = rows[first]["group"]
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    with pytest.raises(DataError, match="near-duplicate group.*split between train and val"):
        load_study_data(root, heldout="h")


def test_blockiness_finds_jpeg_history_in_a_png_wherever_its_grid_lies(tmp_path):
    rng = np.random.default_rng(2)
    big = smooth(rng, 136)
    clean = blockiness(big)
    for quality in (75, 90):
        compressed = jpeg_history(big, quality)
        Image.fromarray(compressed).save(tmp_path / f"q{quality}.png")   # lossless from here on
        stored = np.asarray(Image.open(tmp_path / f"q{quality}.png"))
        assert blockiness(stored) >= JPEG_HISTORY + 0.1
        assert blockiness(stored[2:, 3:]) >= JPEG_HISTORY + 0.1            # a tile off the 8x8 grid
    assert clean < 1.03
    stripes = big.copy()
    stripes[:, ::8] = 255                                                   # period 8 in one direction only
    assert blockiness(stripes) < JPEG_HISTORY
    assert blockiness(np.full((64, 64, 3), 90, np.uint8)) == pytest.approx(1.0)  # flat: nothing to say
    assert np.isnan(blockiness(big[:12, :12]))


def test_audit_flags_jpeg_history_as_a_shortcut(tmp_path):
    rng = np.random.default_rng(3)
    for g in ("tiles_of_jpeg", "clean_a", "clean_b", "clean_c"):
        for sub in ("x", "y", "h"):
            for k in range(8):
                a = smooth(rng, 64)
                save(tmp_path, g, sub, str(k), jpeg_history(a, 80) if g == "tiles_of_jpeg" else a)
    with pytest.warns(ShortcutWarning):
        audit = shortcut_audit(load_study_data(tmp_path, heldout="h"))
    assert audit.cues.at["jpeg_history", "flagged"] == ["tiles_of_jpeg"]
    assert audit.history.loc["tiles_of_jpeg", "history_share"] == 1.0
    assert audit.history.loc["clean_a", "history_share"] == 0.0
    assert audit.cues.at["format", "flagged"] == []                    # every file is a PNG
    assert any(w.startswith("tiles_of_jpeg's lossless files carry JPEG history") for w in audit.warnings)
    assert "jpeg_history" in audit.table().index and "tiles_of_jpeg" in audit.table().at["jpeg_history", "verdict"]


def make_faces_only_folder(root, seed: int = 0):
    """face_only has nothing but faces: holding faces out leaves it untrained."""
    rng = np.random.default_rng(seed)
    cells = {"g0": ("face", "scene"), "g1": ("face", "scene"), "g2": ("face", "scene", "art"), "face_only": ("face",)}
    for g, subs in cells.items():
        for sub in subs:
            for k in range(4):
                save(root, g, sub, str(k), smooth(rng, 32))
    return root


def test_a_rotation_runs_without_a_generator_it_leaves_untrained(tmp_path, capsys):
    root = make_faces_only_folder(tmp_path / "d")
    data = load_study_data(root, heldout="face")
    assert data.generators == ["g0", "g1", "g2"] and data.dropped_generators == ["face_only"]
    assert "face_only" not in set(data.frame.generator)
    assert len(data.unattributable) == 4 and set(data.unattributable.generator) == {"face_only"}
    assert data.unattributable.aside.str.startswith("unattributable").all()
    assert set(data.split("test").generator) == {"g0", "g1", "g2"}
    assert "face_only" in data.set_aside_summary() and "4 test image(s) unattributable" in data.set_aside_summary()
    # face: 3 generators of the rotation with test images; scene keeps every generator but covers 3; art 1
    assert eligible_rotations(data.frame.assign(split="")) == ["face", "scene"]
    from attrlib.data.sources import discover
    assert eligible_rotations(discover(root).frame) == ["face", "scene"]
    # the CLI picks a rotation itself and lists what it cannot attribute
    assert main(["audit", str(root)]) == 0
    out = capsys.readouterr().out
    assert "Held out: face." in out and "Unattributable test images (4" in out and "face_only/face/0.png" in out
    assert "generator 'face_only' dropped from this rotation" in out
    # a rotation that would leave a single generator is no attribution at all
    single = tmp_path / "single"
    for g, subs in {"g0": ("face", "scene"), "g1": ("face",), "g2": ("face",)}.items():
        for sub in subs:
            for k in range(3):
                save(single, g, sub, str(k), smooth(np.random.default_rng([k, len(sub), len(g)]), 32))
    with pytest.raises(DataError, match="only 1 generator"):
        load_study_data(single, heldout="face")


def test_a_validation_subclass_needs_three_generators_else_rule_a_and_says_so(tmp_path):
    root = make_faces_only_folder(tmp_path / "d")
    # scene covers g0, g1, g2 but holding it out as well would leave face_only ... face is held out: art covers
    # only g2, scene leaves g0 and g1 without training images
    data = load_study_data(root, heldout="face", val_subclass="auto")
    assert data.val_subclass is None and "falls back to rule (a)" in data.val_subclass_note
    for k in range(4):   # art for two more generators: now it covers 3, and each keeps scene for training
        for g in ("g0", "g1"):
            save(root, g, "art", f"extra{k}", smooth(np.random.default_rng([k, int(g[1]), 7]), 32))
    data = load_study_data(root, heldout="face", val_subclass="auto")
    assert data.val_subclass == "art" and data.val_subclass_note == ""
    f = data.frame.assign(split="")
    assert choose_val_subclass(f[~f.generator.eq("g2") | ~f.subclass.eq("art")], ["face"]) is None  # 2 cover art


def test_balanced_accuracy_and_its_floors():
    gens = ["a", "b", "c"]
    # an imbalanced test set: a 6, b 3, c 1; the model names "a" for everything but one b
    truth = ["a"] * 6 + ["b"] * 3 + ["c"]
    pred = ["a"] * 6 + ["b", "a", "a"] + ["a"]
    frame = pd.DataFrame({"path": [f"{i}.png" for i in range(10)], "split": "test", "generator": truth, "pred": pred,
                          "subclass": "h", **{f"p_{g}": 1 / 3 for g in gens}, **{f"logp_{g}": np.log(1 / 3) for g in gens}})
    m = run_metrics(frame, gens, "test", train_prior={"a": 0.2, "b": 0.1, "c": 0.7})
    assert m["heldout"]["accuracy"] == pytest.approx(0.7)
    assert m["heldout_balanced_accuracy"] == m["heldout"]["balanced_accuracy"] == pytest.approx((1 + 1 / 3 + 0) / 3)
    assert m["heldout"]["floors"]["majority"] == {"generator": "a", "accuracy": 0.6, "balanced_accuracy": pytest.approx(1 / 3)}
    assert m["heldout"]["floors"]["prior"] == {"generator": "c", "accuracy": 0.1, "balanced_accuracy": pytest.approx(1 / 3)}
    # the mean recall is over the generators present: an absent one does not count as 0
    assert floors([0, 0, 1], gens)["majority"]["balanced_accuracy"] == pytest.approx(0.5)
    assert "prior" not in floors([0, 1], gens)
