"""The quick study's notebooks, figures and tables: `attrlib study --profile quick` executes every numbered notebook
once (one session fixture, conftest.quick_study: started in the background at collection, in a scratch folder, so
nothing is written into the repository), and the assertions below read its executed copies, figures and tables.

Its readers are in two files (this one and test_quick_study_report.py), so that under `make test` (pytest-xdist
taking whole files) both workers read it once it has ended; test_study.py tests the runner itself.
"""
from __future__ import annotations

import base64
import json

import pandas as pd
import pytest
from attrlib.reporting import COMPACT_GAIN

from conftest import numbered_notebooks as _numbered, repo_outputs as _repo_outputs

pytest.importorskip("papermill")


def test_quick_study_runs_every_numbered_notebook(quick_study):
    assert quick_study["code"] == 0, quick_study["log"][-3000:]
    executed = sorted(p.stem for p in (quick_study["cwd"] / "runs" / "notebooks").glob("*.ipynb"))
    assert executed == _numbered()  # 01 included once it exists
    timing = json.loads((quick_study["cwd"] / "runs" / "notebooks" / "study_timing.json").read_text())
    assert timing["profile"] == "quick" and sorted(timing["notebooks"]) == [f"{n}.ipynb" for n in _numbered()]
    assert timing["jobs"] == 1  # as conftest asks: one core for the study, the other for the rest of the suite
    # every finished run was trained by the study, but notebook 11's ensembles: averages of other runs, not counted
    done = list((quick_study["cwd"] / "runs").glob("*/*/done"))
    assembled = [d for d in done if d.parent.parent.name == "ensemble"]
    assert timing["runs_reused_or_before"] == 0 and assembled
    assert timing["runs_trained"] == len(done) - len(assembled)
    assert 0 < max(timing["notebooks"].values()) <= timing["seconds"] <= quick_study["seconds"] + 1
    assert timing["heldout"] == "military_vehicle" and timing["started"] <= timing["finished"]
    assert timing["commit"] is None or len(timing["commit"].split("-")[0]) == 40  # run outside the checkout: None
    # provenance.json beside the results names what produced them, every notebook by this one study
    prov = json.loads((quick_study["cwd"] / "results" / "provenance.json").read_text())
    [record] = prov["studies"]
    assert {"commit", "profile", "data", "data_fingerprint", "seeds", "rotations", "parameters", "settings",
            "versions", "started", "finished", "notebooks", "status"} <= set(record)
    assert record["status"] == "finished" and record["profile"] == "quick" and record["commit"] == timing["commit"]
    assert record["rotations"] == [["military_vehicle"]] and record["seeds"] == [0]
    assert record["notebooks"] == [f"{n}.ipynb" for n in _numbered()] and record["data_fingerprint"].startswith("benchmark:")
    assert record["versions"]["torch"] != "unknown" and timing["provenance"].endswith("provenance.json")


@pytest.mark.parametrize("name", _numbered())
def test_executed_notebook_has_no_errors_and_its_exports(quick_study, name):
    cwd = quick_study["cwd"]
    nb = json.loads((cwd / "runs" / "notebooks" / f"{name}.ipynb").read_text())
    errors = [o for c in nb["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, errors
    source = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    prefix = name[:3]
    if "save_fig(" in source:
        pngs = {p.stem for p in (cwd / "figures").glob(f"{prefix}*.png")}
        others = {p.name for p in (cwd / "figures").glob(f"{prefix}*") if p.suffix != ".png"}
        assert pngs and not others, f"{name}: the quick profile's figure_formats is PNG only: {others}"
        # reporting.show put each in the notebook from the bytes written (not drawn a second time)
        shown = {"".join(o["data"]["image/png"]).replace("\n", "") for c in nb["cells"] for o in c.get("outputs", [])
                 if "image/png" in o.get("data", {})}
        for stem in pngs:
            assert base64.b64encode((cwd / "figures" / f"{stem}.png").read_bytes()).decode() in shown, stem
    if "save_table(" in source:
        stems = {p.stem for p in (cwd / "results").glob(f"{prefix}*")}
        assert stems
        for stem in stems:
            assert all((cwd / "results" / f"{stem}.{ext}").is_file() for ext in ("csv", "md", "tex")), stem
            assert "\\toprule" in (cwd / "results" / f"{stem}.tex").read_text()


def test_every_figure_and_table_carries_a_notebook_prefix(quick_study):
    cwd = quick_study["cwd"]
    prefixes = {n[:3] for n in _numbered()}
    for path in [*(cwd / "figures").iterdir(), *(cwd / "results").iterdir()]:
        assert path.name[:3] in prefixes or path.name == "provenance.json", path.name  # the study's record
    assert _repo_outputs() == quick_study["repo_before"]  # nothing written into the repository
    assert (cwd / "data" / "benchmark-quick").is_dir() and (cwd / "data" / "benchmark-quick-unbiased").is_dir()


def test_notebooks_08_to_10_outputs(quick_study):
    from attrlib.techniques import available

    from attrlib.config import PROFILES

    figs, res = quick_study["cwd"] / "figures", quick_study["cwd"] / "results"
    # a figure of its own for each of the profile's figure_arms, and for no other technique (the knob's effect)
    drawn = PROFILES["quick"]["notebook"]["figure_arms"].split(",")
    assert 0 < len(drawn) < len(available())
    for prefix in ("08_cam_grid_", "10_llr_"):
        assert sorted(p.stem[len(prefix):] for p in figs.glob(f"{prefix}*.png")) == sorted(drawn), prefix
    for stem in ("10_confusion_counts", "10_confusion_normalised", "09_robustness"):
        assert (figs / f"{stem}.png").is_file()
    summary = pd.read_csv(res / "10_summary.csv", index_col=0)
    assert {COMPACT_GAIN, "gap closed vs fine_tuning", "subclass probe", "CAM share in object",
            "accuracy 95% CI", "val accuracy", "worst recall", "ECE", "AUC"} <= set(summary.columns)
    assert "fine_tuning (target data)" in summary.index
    assert summary.loc["fine_tuning (target data)", "uses target data"] == "yes"
    robust = pd.read_csv(res / "09_robustness.csv", index_col=0)
    assert list(robust.columns) == ["clean", "jpeg_q95", "jpeg_q75", "jpeg_q50", "blur_s0.5", "blur_s1", "resize_0.75"]
    assert len(robust) == len(available())
    # headless, notebook 08's explorer is a plain figure: no widget output for papermill's client to wait on
    nb = json.loads((quick_study["cwd"] / "runs" / "notebooks" / "08_gradcam_inspection.ipynb").read_text())
    explorer = [c for c in nb["cells"] if c["cell_type"] == "code" and "cam_explorer(" in "".join(c["source"])]
    kinds = {k for o in explorer[0]["outputs"] for k in o.get("data", {})}
    assert "image/png" in kinds and "application/vnd.jupyter.widget-view+json" not in kinds
    reliance = pd.read_csv(res / "08_content_reliance.csv", index_col=0)
    assert reliance["share_in_mask"].between(0, 1).all() and reliance["mask_area"].between(0, 1).all()
    # the content swap: the profile's swap_images per subclass and generator, each share with its interval
    cells = pd.read_csv(res / "08_content_swap_cells.csv", index_col=0)
    assert (cells["n"] == PROFILES["quick"]["notebook"]["swap_images"]).all()
    swap = pd.read_csv(res / "08_content_swap.csv", index_col=0).dropna(subset=["generator_low"])
    assert len(swap) and (swap["generator_low"] <= swap["follows_generator"]).all()
    assert (swap["follows_generator"] <= swap["generator_high"]).all()
    # notebook 11: rule (b)'s ensemble beside its choice, with the goal's criteria and its paired table
    ablation = pd.read_csv(res / "11_ablation_numbers.csv", index_col=0)
    label = f"top-{PROFILES['quick']['notebook']['ensemble_top']} of rule (b), averaged"
    assert label in ablation.index and "selected (rule b)" in ablation.index
    goal = pd.read_csv(res / "11_goal_ensemble.csv", index_col=0)
    assert goal["met"].iloc[-1] == "not measured"  # no model of its own: no robustness
    assert "selected (rule b)" in pd.read_csv(res / "11_ensemble_vs_selected.csv", index_col=0).index


def test_notebook_12_open_set_table_has_auroc_and_oscr_with_intervals_for_every_arm(quick_study):
    res, figs = quick_study["cwd"] / "results", quick_study["cwd"] / "figures"
    from attrlib.config import PROFILES

    numbers = pd.read_csv(res / "12_open_set_numbers.csv")
    # the notebook's techniques and the quick profile's one arm of notebook 11 (open_world_arms)
    closing_arm = PROFILES["quick"]["notebook"]["open_world_arms"]
    assert set(numbers["arm"]) == {"baseline", "weighted_sampling", "group_dro", closing_arm}
    arms = pd.read_csv(res / "12_arms.csv")  # over rotations and seeds, paired against the baseline
    assert set(arms["arm"]) == set(numbers["arm"]) and set(arms["score"]) == set(numbers["score"])
    for metric in ("auroc", "oscr"):
        assert (arms[f"{metric}_low"] <= arms[metric]).all() and (arms[metric] <= arms[f"{metric}_high"]).all()
        other = arms[arms["arm"] != "baseline"]
        assert other[f"{metric} - baseline low"].notna().all() and (
            other[f"{metric} - baseline low"] <= other[f"{metric} - baseline high"]).all()
    assert set(numbers["score"]) == {"msp", "energy", "mahalanobis", "relative_mahalanobis"} and numbers["unknown"].nunique() == 1
    for metric in ("auroc", "oscr"):
        assert (numbers[f"{metric}_low"] <= numbers[metric]).all() and (numbers[metric] <= numbers[f"{metric}_high"]).all()
    assert (numbers["oscr"] <= numbers["accuracy"] + 1e-9).all()
    assert {"drop", "closed_set_balanced_accuracy"} <= set(pd.read_csv(res / "12_closed_set.csv").columns)
    assert (figs / "12_open_set_tradeoff.png").is_file()
    nb = json.loads((quick_study["cwd"] / "runs" / "notebooks" / "12_open_world.ipynb").read_text())
    shown = "".join(t for c in nb["cells"] for o in c.get("outputs", []) for t in o.get("data", {}).get("text/markdown", []))
    assert "flagged unknown" in shown  # the predict demonstration ran on a folder


def test_the_kernels_ran_on_the_project_kernel(quick_study):
    """Every executed copy says which kernel ran it: the notebooks' own `attrlib` kernel when installed
    (`make install` installs it), python3 otherwise (the runner says so)."""
    from jupyter_client.kernelspec import KernelSpecManager

    expected = "attrlib" if "attrlib" in KernelSpecManager().find_kernel_specs() else "python3"
    for path in (quick_study["cwd"] / "runs" / "notebooks").glob("*.ipynb"):
        nb = json.loads(path.read_text())
        assert nb["metadata"]["papermill"]["parameters"]["profile"] == "quick"
        assert nb["metadata"]["kernelspec"]["name"] == expected, path.name
