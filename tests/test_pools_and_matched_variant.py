"""Issue 11, the simulator's part: a test pool for every subclass (the same images in every variant), the
instance-matched oracle's variant and its manifest column, and the study's way to its twin."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from attrlib.cli import build_parser
from attrlib.simulator import (GENERATORS, HELDOUT, SEED002_MATRIX, SEED002_TEST_COUNTS, SUBCLASSES, VARIANTS,
                               cell_counts, content, families, files_digest, instance_counts,
                               synthesize)
from attrlib.simulator.synth import SPLITS, _stream
from attrlib.study import matched_variant, resolve_data, unbiased_variant

# the quick profile's image size (STUDY_BENCHMARKS) at a smaller scale: three variants fit the time budget
# (calibrating the 48 cell models costs more than the images); every pool keeps the minimum, 3 images
TINY = dict(scale=1 / 1000, size=32, progress=False)
ALL = SUBCLASSES + HELDOUT

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """The three variants side by side, named as the study names its twins (<root>, <root>-<variant>)."""
    base = tmp_path_factory.mktemp("i11")
    return {v: synthesize(base / ("b" if v == "biased" else f"b-{v}"), variant=v, **TINY) for v in VARIANTS}


def _manifest(root) -> pd.DataFrame:
    return pd.read_csv(root / "manifest.csv", keep_default_na=False)


# ------------------------------------------------------------------------------------------------- pools
def test_every_subclass_and_generator_has_a_pool_of_seed002s_count():
    for scale, factor in ((1 / 50, 1.0), (1 / 250, 0.2)):
        for variant in VARIANTS:
            pool = cell_counts(scale, variant)["pool"]
            assert pool == {g: {sc: max(3, int(np.floor(n * factor + 0.5))) for sc in ALL}
                            for g, n in SEED002_TEST_COUNTS.items()}


def test_pools_on_disk_have_the_expected_counts_names_and_instances(folders):
    want = {(g, sc): n for g, row in cell_counts(1 / 1000)["pool"].items() for sc, n in row.items()}
    assert len(want) == len(GENERATORS) * len(ALL) == 48
    for root in folders.values():
        frame = _manifest(root)
        pool = frame[frame["split"] == "pool"]
        assert pool.groupby(["generator", "subclass"]).size().to_dict() == want
        assert (pool["instance"] == pool["subclass"]).all()
        assert pool["path"].str.fullmatch(r"[a-z_0-9]+/[a-z_]+/pool_\d{5}\.png").all()
    assert set(_manifest(folders["biased"])["split"]) == set(SPLITS) == {"train", "val", "pool"}


def test_pool_images_are_byte_identical_in_every_variant(folders):
    frames = {v: _manifest(root).query("split == 'pool'") for v, root in folders.items()}
    ref = frames["biased"][["path", "generator", "subclass", "mask", "instance"]].reset_index(drop=True)
    for v, frame in frames.items():
        assert frame[ref.columns].reset_index(drop=True).equals(ref), v
    for rel in list(ref["path"]) + list(ref["mask"]):
        first = (folders["biased"] / rel).read_bytes()
        assert all((root / rel).read_bytes() == first for root in folders.values()), rel
    # ... while the training images differ between variants (the pools' stream is not the training one)
    rel = "stylegan2/car/train_00000.png"   # a cell both variants train on
    assert (folders["biased"] / rel).read_bytes() != (folders["unbiased"] / rel).read_bytes()


def test_a_pool_image_is_the_cells_own_instance_rendering(folders):
    """A pool image of (generator, subclass) is its content rendered by that cell's model: re-rendered from its
    stream it matches, re-rendered by another cell's model it does not."""
    root = folders["matched"]
    params = json.loads((root / "benchmark.json").read_text())
    g, sc = "stylegan2", "horse"
    got = np.asarray(Image.open(root / f"{g}/{sc}/pool_00000.png"))

    def rendered(instance: str) -> np.ndarray:
        rng = np.random.default_rng(_stream(params["seed"], "matched", "pool", g, sc, sc, False))
        clean, _ = content.draw(sc, cell_counts(1 / 1000)["pool"][g][sc], 32, rng)
        return families.render(g, clean, params["strength"], rng, instance=instance,
                               spread=params["instance_spread"])[0]

    assert np.array_equal(rendered(sc), got)
    assert not np.array_equal(rendered("face"), got)


# ------------------------------------------------------------------------------------ the matched oracle
def test_matched_counts_keep_each_generators_total_over_every_content_and_biased_instance():
    biased, matched = instance_counts(variant="biased"), instance_counts(variant="matched")
    for g, cells in SEED002_MATRIX.items():
        row = matched["train"][g]
        assert sum(row.values()) == sum(biased["train"][g].values())
        assert set(row) == {(c, i) for c in SUBCLASSES for i in cells}     # every (content, instance) pair
        assert max(row.values()) - min(row.values()) <= 1                   # uniformly
        for axis in (0, 1):  # the remainder favours no content and no instance
            totals = pd.Series(row).groupby(level=axis).sum()
            assert totals.max() - totals.min() <= 1, (g, axis)
        assert matched["val"][g] == {p: max(1, int(np.floor(0.2 * n + 0.5))) for p, n in row.items()}
    assert matched["pool"] == biased["pool"]


def test_matched_manifest_names_only_the_biased_cells_instances(folders):
    frame = _manifest(folders["matched"])
    assert list(frame.columns) == ["path", "generator", "subclass", "split", "mask", "instance"]
    for split in ("train", "val"):
        rows = frame[frame["split"] == split]
        for g, cells in SEED002_MATRIX.items():
            mine = rows[rows["generator"] == g]
            assert set(mine["instance"]) == set(cells), (split, g)
            assert set(mine["subclass"]) == set(SUBCLASSES), (split, g)
            assert set(zip(mine["subclass"], mine["instance"])) == {(c, i) for c in SUBCLASSES for i in cells}
    training = frame[frame["split"] != "pool"]
    assert (training["instance"] != training["subclass"]).any()
    # the name carries the instance: several instances render the same content of a generator
    assert (training["path"] == training["generator"] + "/" + training["subclass"] + "/" + training["split"] + "_"
            + training["instance"] + "_" + training["path"].str[-9:]).all()
    for v in ("biased", "unbiased"):
        other = _manifest(folders[v])
        assert (other["instance"] == other["subclass"]).all()
    assert json.loads((folders["matched"] / "benchmark.json").read_text())["variant"] == "matched"


def test_a_matched_image_is_rendered_by_its_instance(folders):
    root = folders["matched"]
    params = json.loads((root / "benchmark.json").read_text())
    g, sc, inst = "stylegan2", "bed", "horse"   # bed content never occurs in stylegan2's biased cells
    got = np.asarray(Image.open(root / f"{g}/{sc}/train_{inst}_00000.png"))

    def rendered(instance: str) -> np.ndarray:
        rng = np.random.default_rng(_stream(params["seed"], "matched", "train", g, sc, inst, False))
        n = instance_counts(1 / 1000, "matched")["train"][g][(sc, inst)]
        clean, _ = content.draw(sc, n, 32, rng)
        return families.render(g, clean, params["strength"], rng, instance=instance,
                               spread=params["instance_spread"])[0]

    assert np.array_equal(rendered(inst), got)
    assert not np.array_equal(rendered(sc), got)


# files_digest of the matched variant's folder as the code before the faster synthesis (issue 19) wrote it
MATCHED_FILES_SHA256 = "163ca9c3204a8b06cfba4bf75f12d35fd976894b9b60f833a34590d6ae34d91c"


def test_the_matched_variants_files_are_pinned(folders):
    assert files_digest(folders["matched"]) == MATCHED_FILES_SHA256


def test_random_streams_never_coincide_except_the_pools():
    """Every cell of every variant (and of the realistic files) has its own stream; a pool's is the same in
    every variant. Checked on the streams' states: numpy gives [a, b] and [a, b, 0] the same one."""
    states: dict[tuple, tuple] = {}
    pools: dict[tuple, set] = {}
    for realistic in (False, True):
        for variant in VARIANTS:
            for split, rows in instance_counts(variant=variant, realistic=realistic).items():
                for g, row in rows.items():
                    for sc, inst in row:
                        key = _stream(0, variant, split, g, sc, inst, realistic)
                        state = tuple(np.random.SeedSequence(key).generate_state(4))
                        who = (realistic, "any" if split == "pool" else variant, split, g, sc, inst)
                        assert states.setdefault(state, who) == who, (who, states[state])
                        if split == "pool":
                            pools.setdefault((realistic, g, sc), set()).add(state)
    assert pools and all(len(s) == 1 for s in pools.values())


# -------------------------------------------------------------------------------- the study's twins, CLI
def test_resolve_data_finds_the_matched_twin_next_to_the_benchmark(folders):
    stamp = (folders["matched"] / "benchmark.json").stat().st_mtime_ns
    assert resolve_data(data=str(folders["biased"]), variant="matched") == folders["matched"]
    assert matched_variant(folders["biased"]) == folders["matched"]
    assert (folders["matched"] / "benchmark.json").stat().st_mtime_ns == stamp    # reused, not made again
    assert matched_variant(folders["matched"]) == folders["matched"]
    assert unbiased_variant(folders["matched"]) == folders["unbiased"]            # a twin's twin: next to it
    with pytest.raises(Exception, match="valid variants: biased, unbiased, matched"):
        resolve_data(data=str(folders["biased"]), variant="balanced")


def test_cli_synth_offers_every_variant_and_the_second_configuration():
    synth = build_parser()._subparsers._group_actions[0].choices["synth"]
    options = {a.dest: a for a in synth._actions}
    assert tuple(options["variant"].choices) == VARIANTS
    args = build_parser().parse_args("synth --seed 1 --instance-spread 0.35 --variant matched "
                                     "--out data/benchmark-second".split())
    assert (args.seed, args.instance_spread, args.variant) == (1, 0.35, "matched")
