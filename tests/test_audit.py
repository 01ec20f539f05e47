"""The shortcut audit: header metadata, the JPEG quality estimate, the planted cues it must flag, bad files.

One tiny folder is built with PIL: jpeg_gen is all JPEG q75 at 48x32, rgba_gen all RGBA PNG at 40x40,
mixed_a / mixed_b / small_gen RGB PNG at 32x32; every generator has the same two subclasses (so content is
no cue) and small_gen has fewer than MIN_IMAGES training images.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from attrlib.cli import main
from attrlib.data import ShortcutWarning, file_metadata, load_study_data, shortcut_audit
from attrlib.data.audit import MIN_IMAGES, jpeg_quality
from attrlib.errors import DataError
from attrlib.reporting import save_table, shortcut_audit_figure

RNG = np.random.default_rng(0)
HELDOUT = "car"
PER_CELL = 14        # ~11 training images per cell after the 20% validation share: 22 per generator
SMALL_PER_CELL = 4   # small_gen: ~6 training images, under MIN_IMAGES


def _save(root: Path, gen: str, sub: str, k: int, array: np.ndarray, ext: str, **kw) -> None:
    (root / gen / sub).mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(root / gen / sub / f"{k:03d}{ext}", **kw)


def make_audit_folder(root: Path) -> Path:
    for sub in ("face", "horse"):
        for k in range(PER_CELL):
            _save(root, "jpeg_gen", sub, k, RNG.integers(0, 256, (32, 48, 3), dtype=np.uint8), ".jpg", quality=75)
            _save(root, "rgba_gen", sub, k, RNG.integers(0, 256, (40, 40, 4), dtype=np.uint8), ".png")
            for gen in ("mixed_a", "mixed_b"):
                _save(root, gen, sub, k, RNG.integers(0, 256, (32, 32, 3), dtype=np.uint8), ".png")
        for k in range(SMALL_PER_CELL):
            _save(root, "small_gen", sub, k, RNG.integers(0, 256, (32, 32, 3), dtype=np.uint8), ".png")
    for gen in ("jpeg_gen", "rgba_gen", "mixed_a", "mixed_b", "small_gen"):
        for k in range(2):
            _save(root, gen, HELDOUT, k, RNG.integers(0, 256, (32, 32, 3), dtype=np.uint8), ".png")
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return load_study_data(make_audit_folder(tmp_path_factory.mktemp("audit")), heldout=HELDOUT)


@pytest.fixture(scope="module")
def audit(data):
    with pytest.warns(ShortcutWarning) as record:
        result = shortcut_audit(data)
    assert len(record) == 1, "the audit warns once, with a summary"
    return result


def test_file_metadata_reads_headers(data):
    meta = file_metadata(data.frame)
    assert len(meta) == len(data.frame)
    assert list(meta.columns[:4]) == ["path", "generator", "subclass", "split"]
    jpeg = meta[(meta.generator == "jpeg_gen") & (meta.subclass != HELDOUT)]
    assert set(jpeg.format) == {"JPEG"} and set(jpeg["mode"]) == {"RGB"} and set(jpeg.bit_depth) == {8}
    assert set(zip(jpeg.width, jpeg.height)) == {(48, 32)} and np.allclose(jpeg.aspect, 1.5)
    assert jpeg.jpeg_quality.between(72, 78).all()
    assert jpeg.jpeg_ijg_table.all() and jpeg.chroma_subsampled.all() and set(jpeg.jpeg_subsampling) == {"4:2:0"}
    rgba = meta[(meta.generator == "rgba_gen") & (meta.subclass != HELDOUT)]
    assert set(rgba.format) == {"PNG"} and set(rgba["mode"]) == {"RGBA"} and rgba.jpeg_quality.isna().all()
    row = meta.iloc[0]
    assert row.file_bytes == os.path.getsize(row.path)
    assert row.bytes_per_pixel == pytest.approx(row.file_bytes / (row.width * row.height))


def test_jpeg_quality_estimate(tmp_path):
    a = RNG.integers(0, 256, (24, 24, 3), dtype=np.uint8)
    for q in (5, 30, 50, 75, 90, 100):
        Image.fromarray(a).save(tmp_path / "q.jpg", quality=q)
        meta = file_metadata(pd.DataFrame({"path": [str(tmp_path / "q.jpg")], "generator": ["g"]}))
        assert meta.jpeg_quality[0] == q and meta.jpeg_ijg_table[0]
    # an encoder with its own tables (not IJG's): the nearest IJG quality, marked as not exact
    table = [min(255, 3 + i // 2) for i in range(64)]
    quality, exact = jpeg_quality(table)
    assert not exact and 1 <= quality <= 100


def test_audit_flags_planted_shortcuts(audit):
    flagged = audit.flagged()
    assert {"format", "jpeg_quality", "size"} <= set(flagged["jpeg_gen"])
    assert {"mode", "size"} <= set(flagged["rgba_gen"])
    assert "format" not in flagged.get("rgba_gen", [])        # all PNG, like three others
    for gen in ("mixed_a", "mixed_b", "small_gen"):
        assert "format" not in flagged.get(gen, []) and gen not in audit.cues.at["format", "flagged"]
    assert "subclass" not in {c for cues in flagged.values() for c in cues}   # every generator has both subclasses
    # the distribution tables
    assert audit.formats.at["jpeg_gen", "JPEG"] == 1.0 and audit.formats.at["mixed_a", "PNG"] == 1.0
    assert abs(audit.jpeg.at["jpeg_gen", "quality_median"] - 75) <= 3
    assert audit.sizes.at["rgba_gen", "top_size"] == "40x40" and audit.modes.at["rgba_gen", "RGBA 8-bit"] == 1.0
    assert audit.subclasses.loc["jpeg_gen"].to_dict() == {"face": 0.5, "horse": 0.5}
    assert audit.recall.at["jpeg_gen", "format"] >= 0.9


def test_audit_warnings_in_plain_words(audit):
    text = "\n".join(audit.warnings)
    jpeg_line = next(w for w in audit.warnings if w.startswith("jpeg_gen"))
    assert "file format alone" in jpeg_line and "all JPEG" in jpeg_line and "all PNG" in jpeg_line
    assert "JPEG q75" in jpeg_line and "48x32" in jpeg_line
    rgba_line = next(w for w in audit.warnings if w.startswith("rgba_gen"))
    assert "colour mode alone" in rgba_line and "RGBA" in rgba_line and "40x40" in rgba_line
    assert not any(w.startswith(("mixed_a", "mixed_b")) for w in audit.warnings)
    few = [w for w in audit.warnings if f"fewer than {MIN_IMAGES}" in w]
    assert len(few) == 1 and few[0].startswith("small_gen")
    assert set(audit.counts[audit.counts < MIN_IMAGES].index) == {"small_gen"}
    assert "fingerprint" in text


def test_audit_table_and_figure(audit, tmp_path):
    table = audit.table()
    assert list(table.columns) == ["what", "balanced_accuracy", "chance", "verdict"]
    assert list(table.index) == ["format", "jpeg_quality", "size", "aspect", "mode", "jpeg_history", "subclass", "metadata"]
    assert np.allclose(table.chance, 1 / 5)
    assert table.at["format", "balanced_accuracy"] > 1 / 5 and table.at["format", "verdict"].startswith("shortcut")
    assert table.at["metadata", "balanced_accuracy"] >= table.at["format", "balanced_accuracy"]
    assert all(p.exists() for p in save_table(table, "01_shortcut_audit", tmp_path))
    assert set(audit.generator_tables()) == {"formats", "jpeg", "jpeg_history", "sizes", "modes", "subclasses", "recall"}
    fig = shortcut_audit_figure(audit)
    assert len(fig.axes) == 3
    plt.close(fig)


def test_audit_of_metadata_frame_and_bad_split(data, audit):
    meta = file_metadata(data.frame)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ShortcutWarning)
        again = shortcut_audit(meta, split="train")
    pd.testing.assert_frame_equal(again.table(), audit.table())
    with pytest.raises(DataError, match="splits"):
        shortcut_audit(data.frame, split="ft_train")


def test_cli_audit(data, capsys):
    assert main(["audit", str(data.root), "--heldout", HELDOUT]) == 0
    out = capsys.readouterr().out
    assert "balanced_accuracy" in out and "jpeg_gen can be told apart" in out and "small_gen has only" in out


def test_corrupt_file_raise_and_skip(tmp_path):
    for gen, ext in (("a", ".png"), ("b", ".jpg")):
        for k in range(4):
            _save(tmp_path, gen, "face", k, RNG.integers(0, 256, (16, 16, 3), dtype=np.uint8), ext)
    bad = tmp_path / "a" / "face" / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    paths = sorted(str(p) for p in tmp_path.rglob("*.*"))
    frame = pd.DataFrame({"path": paths, "generator": [Path(p).parts[-3] for p in paths], "subclass": "face"})
    with pytest.raises(DataError, match="bad.png"):
        file_metadata(frame)
    with pytest.warns(UserWarning, match="skipped 1"):
        meta = file_metadata(frame, on_bad="skip")
    assert len(meta) == 8 and str(bad) not in set(meta.path)
    assert meta.attrs["skipped"][0][0] == str(bad) and "corrupt" in meta.attrs["skipped"][0][1]
    with pytest.warns(ShortcutWarning):
        result = shortcut_audit(frame, split="all", on_bad="skip", min_images=2)
    assert [p for p, _ in result.skipped] == [str(bad)]
    assert any("unreadable" in w for w in result.warnings)
    assert "b" in result.cues.at["format", "flagged"]


def test_a_generator_that_is_mostly_jpeg_is_partly_told_apart(tmp_path):
    """The realistic case: one generator's files are mostly JPEG, a few others' are too: not a clean
    separation (no flag), but a warning that the format singles out most of its images."""
    rng = np.random.default_rng(0)
    for g, jpeg_share in (("mostly_jpeg", 0.85), ("some_jpeg", 0.15), ("png_a", 0.0), ("png_b", 0.0)):
        for sub in ("cat", "dog", "held"):
            (tmp_path / g / sub).mkdir(parents=True)
            for k in range(14):
                img = Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
                if k < round(jpeg_share * 14):
                    img.save(tmp_path / g / sub / f"{k}.jpg", quality=90)
                else:
                    img.save(tmp_path / g / sub / f"{k}.png")
    with pytest.warns(Warning):
        audit = shortcut_audit(load_study_data(tmp_path, heldout="held"))
    assert "mostly_jpeg" not in audit.flagged()
    assert "mostly_jpeg" in audit.cues.at["format", "leaning"]
    assert any(w.startswith("mostly_jpeg is partly told apart by file format") for w in audit.warnings)
    assert "partial shortcut" in audit.table().at["format", "verdict"]
