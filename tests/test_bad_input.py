"""Bad input: every case gives a DataError that names the file or manifest line and says what to do;
with on_bad="skip" bad files are left out, listed in `.skipped`, and a warning says so.

Each test makes its own tiny folder under tmp_path (8x8 PNGs), so the file runs in a few seconds.
"""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from attrlib.data import ImageDataset, load_image, load_study_data, verify_images
from attrlib.errors import DataError

H = "mv"  # the held-out subclass of these tiny folders
CELLS = {("a", "x"): 3, ("b", "x"): 3, ("a", "y"): 2, ("a", "mv"): 2, ("b", "mv"): 2}


def make(root: Path, cells=CELLS, size: int = 8) -> Path:
    rng = np.random.default_rng(0)
    for (g, s), n in cells.items():
        (root / g / s).mkdir(parents=True, exist_ok=True)
        for k in range(n):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / g / s / f"{k}.png")
    return root


def rows(cells=CELLS, split: bool = False) -> list[dict]:
    out = []
    for (g, s), n in cells.items():
        for k in range(n):
            r = dict(path=f"{g}/{s}/{k}.png", generator=g, subclass=s)
            if split:
                r["split"] = "test" if s == H else "train"
            out.append(r)
    return out


def write_manifest(root: Path, records: list[dict], name: str = "manifest.csv") -> Path:
    pd.DataFrame(records).to_csv(root / name, index=False)
    return root / name


def png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims width x height pixels but that carries almost no data: a decompression bomb."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
                     + chunk(b"IEND", b""))


def decode_all(root: Path, **kw):
    data = load_study_data(root, heldout=H, **kw)
    return data, ImageDataset(data.frame, data, policy="crop", size=8)


# --- decode-level problems: found when images are read (cache fill, verify_images, streaming) -------------

def test_corrupt_file(tmp_path):
    root = make(tmp_path / "d")
    bad = root / "a" / "x" / "0.png"
    raw = bytearray(bad.read_bytes())
    raw[40:70] = bytes(30)  # destroys the image data (and its CRC) but keeps the PNG signature
    bad.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"a/x/0\.png is corrupt") as e:
        decode_all(root)
    assert "on_bad='skip'" in str(e.value)


def test_truncated_image(tmp_path):
    root = make(tmp_path / "d", size=64)
    bad = root / "b" / "x" / "1.png"
    bad.write_bytes(bad.read_bytes()[:-200])
    with pytest.raises(DataError, match=r"b/x/1\.png is truncated"):
        load_image(bad)
    jpg = tmp_path / "t.jpg"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(jpg, quality=90)
    jpg.write_bytes(jpg.read_bytes()[:600])
    with pytest.raises(DataError, match=r"t\.jpg is truncated"):
        load_image(jpg)


def test_zero_byte_file(tmp_path):
    root = make(tmp_path / "d")
    (root / "a" / "x" / "0.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"a/x/0\.png is empty \(0 bytes\)"):
        decode_all(root)


def test_non_image_file_with_image_extension(tmp_path):
    root = make(tmp_path / "d")
    (root / "a" / "x" / "2.png").write_text("<html><body>404 Not Found</body></html>")
    with pytest.raises(DataError, match=r"a/x/2\.png is not an image"):
        decode_all(root)


def test_decompression_bomb(tmp_path):
    bomb = tmp_path / "bomb.png"
    png_header_only(bomb, 9000, 9000)  # 81 Mpx: over attrlib's limit, under Pillow's own
    with pytest.raises(DataError, match=r"bomb\.png is too large to decode safely.*decompression bomb"):
        load_image(bomb)
    png_header_only(bomb, 30000, 30000)  # over Pillow's limit too: still our message
    with pytest.raises(DataError, match="decompression bomb"):
        load_image(bomb)
    small = make(tmp_path / "d") / "a" / "x" / "0.png"
    with pytest.raises(DataError, match=r"64 pixels; the limit is 10 pixels"):
        load_image(small, max_pixels=10)


def test_all_bad_files_are_listed_and_skip_mode_leaves_them_out(tmp_path):
    root = make(tmp_path / "d")
    (root / "a" / "x" / "0.png").write_bytes(b"")
    (root / "b" / "x" / "0.png").write_text("not an image")
    with pytest.raises(DataError, match=r"2 of 12 image\(s\) cannot be decoded") as e:
        verify_images(load_study_data(root, heldout=H).frame, progress=False)
    assert "a/x/0.png" in str(e.value) and "b/x/0.png" in str(e.value)
    with pytest.warns(UserWarning, match="skipped 2 unusable"):
        data, ds = decode_all(root, on_bad="skip")
    assert len(ds) == 10 and len(ds.frame) == 10
    assert sorted(Path(p).parent.parent.name + "/" + Path(p).name for p, _ in data.skipped) == ["a/0.png", "b/0.png"]
    assert all(not p.endswith(("a/x/0.png", "b/x/0.png")) for p in ds.frame.path)
    # labels still line up with the rows that were kept
    for i in range(len(ds)):
        assert ds[i]["generator"] == data.generators.index(ds.frame.generator[i])


def test_streaming_dataset_names_the_bad_file(tmp_path):
    root = make(tmp_path / "d")
    (root / "a" / "x" / "0.png").write_bytes(b"")
    data = load_study_data(root, heldout=H)
    ds = ImageDataset(data.frame, data, size=8, cache="stream")
    i = ds.frame.index[ds.frame.path.str.endswith("a/x/0.png")][0]
    with pytest.raises(DataError, match=r"a/x/0\.png is empty[\s\S]*verify_images"):
        ds[i]
    with pytest.warns(UserWarning, match="skipped 1"):
        skipping = ImageDataset(data.frame, data, size=8, cache="stream", on_bad="skip")
    assert len(skipping) == len(data.frame) - 1


# --- structure: found eagerly by load_study_data ------------------------------------------------------

def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match=r"data path .*nowhere does not exist"):
        load_study_data(tmp_path / "nowhere")


def test_empty_folder_and_folder_without_images(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty contains no images; expected <root>/<generator>/<subclass>"):
        load_study_data(tmp_path / "empty")
    masks_only = tmp_path / "m"
    (masks_only / "_masks" / "a" / "x").mkdir(parents=True)
    Image.new("L", (4, 4)).save(masks_only / "_masks" / "a" / "x" / "0.png")
    (masks_only / "a" / "x").mkdir(parents=True)
    (masks_only / "a" / "x" / "readme.txt").write_text("hi")
    with pytest.raises(DataError, match=r"contains no images \(folders starting with '_' or '.' are ignored"):
        load_study_data(masks_only)


def test_images_outside_generator_subclass_folders(tmp_path):
    root = make(tmp_path / "d")
    Image.new("RGB", (8, 8)).save(root / "a" / "stray.png")
    with pytest.raises(DataError, match=r"1 image\(s\) are not inside a <generator>/<subclass>/ folder[\s\S]*a/stray\.png"):
        load_study_data(root, heldout=H)
    with pytest.warns(UserWarning, match="skipped 1"):
        data = load_study_data(root, heldout=H, on_bad="skip")
    assert [Path(p).name for p, _ in data.skipped] == ["stray.png"]


def test_manifest_missing_columns(tmp_path):
    root = make(tmp_path / "d")
    write_manifest(root, [{k: v for k, v in r.items() if k != "subclass"} for r in rows()])
    with pytest.raises(DataError, match=r"manifest\.csv lacks required column\(s\) subclass \(columns found: path, generator\)"):
        load_study_data(root, heldout=H)


def test_manifest_unknown_split_values_all_listed(tmp_path):
    root = make(tmp_path / "d")
    rs = rows(split=True)
    rs[1]["split"], rs[4]["split"] = "training", "Test?"
    write_manifest(root, rs)
    with pytest.raises(DataError, match=r"2 row\(s\) with an unknown split value:\n  line 3: split 'training'\n  line 6: split 'Test\?'"):
        load_study_data(root, heldout=H)


def test_manifest_duplicate_paths(tmp_path):
    root = make(tmp_path / "d")
    rs = rows()
    rs.append(dict(rs[0]))
    rs.append(dict(rs[2], path="./a/x/../x/2.png"))  # the same file spelled differently
    write_manifest(root, rs)
    with pytest.raises(DataError, match=r"2 image\(s\) listed more than once:\n  lines 2, 14: .*a/x/0\.png\n  lines 4, 15"):
        load_study_data(root, heldout=H)


def test_manifest_paths_escaping_the_root(tmp_path):
    outside = make(tmp_path / "outside")
    root = make(tmp_path / "d")
    (root / "link.png").symlink_to(outside / "a" / "x" / "0.png")
    rs = rows()
    rs[0]["path"] = "../outside/a/x/0.png"
    rs[1]["path"] = str(outside / "a" / "x" / "1.png")
    rs[2]["path"] = "link.png"
    write_manifest(root, rs)
    with pytest.raises(DataError) as e:
        load_study_data(root, heldout=H)
    text = str(e.value)
    assert "3 path(s) outside the manifest's folder" in text
    for line in ("line 2: path '../outside/a/x/0.png'", "line 3: path '", "line 4: path 'link.png' resolves to"):
        assert line in text
    # inside the root, an absolute path is fine
    rs = rows()
    rs[0]["path"] = str(root / "a" / "x" / "0.png")
    write_manifest(root, rs)
    assert len(load_study_data(root, heldout=H).frame) == len(rs)


def test_manifest_path_does_not_exist(tmp_path):
    root = make(tmp_path / "d")
    rs = rows()
    rs[0]["path"] = "a/x/missing.png"
    rs[3]["path"] = "a/x/notes.txt"
    (root / "a" / "x" / "notes.txt").write_text("x")
    write_manifest(root, rs)
    with pytest.raises(DataError, match=r"line 2: path 'a/x/missing\.png' does not exist[\s\S]*line 5: path 'a/x/notes\.txt' does not have an image extension"):
        load_study_data(root, heldout=H)
    with pytest.warns(UserWarning, match="skipped 2 unusable"):
        data = load_study_data(root, heldout=H, on_bad="skip")
    assert len(data.frame) == len(rs) - 2 and len(data.skipped) == 2


def test_heldout_subclass_in_training(tmp_path):
    root = make(tmp_path / "d")
    rs = rows(split=True)
    rs[-1]["split"] = "train"
    rs[-2]["split"] = "val"
    write_manifest(root, rs)
    with pytest.raises(DataError, match=r"2 row\(s\) put a held-out subclass into training:\n  line 12: subclass 'mv' has split 'val'\n  line 13"):
        load_study_data(root, heldout=H)


def test_heldout_subclass_absent(tmp_path):
    root = make(tmp_path / "d")
    with pytest.raises(DataError, match=r"held-out subclass\(es\) 'military_vehicle' do not occur .*subclasses present: mv, x, y"):
        load_study_data(root)


def test_generator_without_training_images(tmp_path):
    root = make(tmp_path / "d", {("a", "x"): 2, ("a", "mv"): 2, ("c", "mv"): 3})
    with pytest.raises(DataError, match=r"1 generator\(s\) have no training images:\n  generator 'c': 3 mv in test"):
        load_study_data(root, heldout=H)


def test_test_row_whose_subclass_is_not_held_out(tmp_path):
    root = make(tmp_path / "d")
    rs = rows(split=True)
    rs[0]["split"] = "test"
    write_manifest(root, rs)
    with pytest.raises(DataError, match=r"1 test row\(s\) whose subclass is not held out:\n  line 2: subclass 'x' has split 'test'"):
        load_study_data(root, heldout=H)


def test_empty_label_values(tmp_path):
    root = make(tmp_path / "d")
    rs = rows()
    rs[0]["generator"] = ""
    rs[3]["subclass"] = "   "
    rs[5]["path"] = ""
    write_manifest(root, rs)
    with pytest.raises(DataError, match=r"3 empty value\(s\) in required columns:\n  line 2: 'generator' is empty\n"
                                        r"  line 5: 'subclass' is empty\n  line 7: 'path' is empty"):
        load_study_data(root, heldout=H)


def test_unreadable_manifests(tmp_path):
    root = make(tmp_path / "d")
    (root / "manifest.csv").write_text("")
    with pytest.raises(DataError, match=r"manifest\.csv is empty"):
        load_study_data(root, heldout=H)
    (root / "manifest.csv").write_text("path,generator,subclass\n")
    with pytest.raises(DataError, match="has a header but no rows"):
        load_study_data(root, heldout=H)
    (root / "manifest.csv").write_text('path,generator,subclass\n"a/x/0.png,a,x\n')
    with pytest.raises(DataError, match="cannot be parsed as CSV"):
        load_study_data(root, heldout=H)
    with pytest.raises(DataError, match=r"is a file but not a \.csv manifest"):
        load_study_data(root / "a" / "x" / "0.png", heldout=H)


def test_mask_problems(tmp_path):
    root = make(tmp_path / "d")
    Image.new("L", (5, 5)).save(root / "a" / "x" / "m0.png")
    rs = rows()
    rs[0]["mask"] = "a/x/m0.png"
    rs[1]["mask"] = "a/x/nomask.png"
    write_manifest(root, rs)
    with pytest.raises(DataError, match=r"line 3: mask 'a/x/nomask\.png' does not exist"):
        load_study_data(root, heldout=H)
    rs[1]["mask"] = ""
    write_manifest(root, rs)
    data = load_study_data(root, heldout=H)
    with pytest.raises(DataError, match=r"mask .*m0\.png is 5x5 but its image .*0\.png is 8x8"):
        ImageDataset(data.frame, data, size=8, with_mask=True)
