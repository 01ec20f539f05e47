"""Reading the quick study's folder as a user does after it: `attrlib predict --study` with the model it selected,
the runs it reuses, and `attrlib report` over it (the other half of its readers: test_quick_study.py)."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pandas as pd
import pytest

from conftest import LOG_OR_BAR, REPO, numbered_notebooks as _numbered

pytest.importorskip("papermill")


def test_predict_with_the_model_the_quick_study_selected(quick_study, tmp_path):
    """`attrlib predict --study` on the study's folder: notebook 11's choice in its first rotation, seed 0, with
    that run's id and the commit that trained it in every row."""
    from attrlib import runfolder
    from attrlib.cli import main
    from attrlib.provenance import git_commit
    from attrlib.study import closing

    cwd = quick_study["cwd"]
    choice = pd.read_csv(cwd / "results" / "11_selection.csv", index_col=0)
    images = next(p for p in sorted((cwd / "data" / "benchmark-quick").iterdir()) if p.is_dir() and p.name[0] not in "._")
    out = tmp_path / "predictions.csv"
    assert main(["predict", "--study", str(cwd), str(images), "--out", str(out), "--progress", "off"]) == 0
    table = pd.read_csv(out, dtype={"commit": str})
    assert len(table) == sum(1 for p in images.rglob("*.png"))
    run = Path(table["run"].iat[0])
    config = runfolder.read_config(run)
    arm = closing.arm_configs(closing.ARMS, closing.SEEDS_TECHNIQUES)[choice["chosen"].iat[0]]
    assert "+".join(config.heldout) == choice["heldout"].iat[0] and config.seed == 0
    assert all(getattr(config, k) == v for k, v in arm.items()) and not config.unknown_generators
    assert (table["run_id"] == run.name).all() and (table["commit"] == git_commit(REPO)).all()
    about = json.loads(out.with_suffix(".provenance.json").read_text())
    assert about["study"]["arm"] == choice["chosen"].iat[0] and about["commit"] == git_commit(REPO)


def test_the_study_reused_runs_and_trains_nothing_again(quick_study):
    """Every notebook asked the engine for its runs; 04, 06-10 found 02's baseline (and each other's) done.
    Asking again for every technique of the study returns the same folders without training."""
    from attrlib import sweep
    from attrlib.config import PROFILES
    from attrlib.data.fingerprint import data_fingerprint
    from attrlib.techniques import available

    cwd = quick_study["cwd"]
    done = {p: p.stat().st_mtime_ns for p in (cwd / "runs").glob("*/*/done")}
    old_cwd = os.getcwd()
    os.chdir(cwd)  # as the study: its notebooks got data="data/benchmark-quick" (relative to this folder)
    try:
        for name in available():
            dirs = sweep.train_seeds(name, "quick", data="data/benchmark-quick", runs="runs", device="cpu",
                                      progress=False)
            assert all((cwd / d / "done") in done for d in dirs), name
    finally:
        os.chdir(old_cwd)
    assert {p: p.stat().st_mtime_ns for p in (cwd / "runs").glob("*/*/done")} == done
    baselines = [json.loads((p.parent / "config.json").read_text()) for p in (cwd / "runs" / "baseline").glob("*/done")]
    plain = [c for c in baselines if c["stem"] == "none" and c["input_policy"] == "crop" and c["image_size"] == 32
             and c["backbone"] == "compact" and c.get("augment", "none") == "none"
             and not c.get("unknown_generators")  # not notebook 11's arms, nor notebook 12's left-out generators
             and c["steps"] == PROFILES["quick"]["config"]["steps"]]  # nor jtt's identification run (id_steps)
    # Runs are keyed by the data's fingerprint, not its path: notebook 01's check on the biased default and
    # 02-10 share one run, the unbiased check and notebook 10's oracle another. One run per data set.
    fingerprints = [data_fingerprint(cwd / c["data"]) for c in plain]
    assert len(fingerprints) == len(set(fingerprints))
    for benchmark in ("data/benchmark-quick", "data/benchmark-quick-unbiased"):
        assert data_fingerprint(cwd / benchmark) in fingerprints


def _report(cwd: Path, out: Path, *args: str) -> int:
    from attrlib.cli import main

    return main(["report", "--executed", str(cwd / "runs" / "notebooks"), "--figures", str(cwd / "figures"),
                 "--results", str(cwd / "results"), "--out", str(out), *args])


@pytest.fixture(scope="module")
def report(quick_study, tmp_path_factory) -> Path:
    """`attrlib report` over the quick study, once for the tests below: its folder."""
    out = tmp_path_factory.mktemp("quick_report") / "report"
    assert _report(quick_study["cwd"], out) == 0
    return out


def test_the_report_links_every_notebook_figure_and_table(quick_study, report, tmp_path):
    """`attrlib report` over the quick study: an index linking one page per notebook, every figure and
    every table (all copied into the report), the study's profile, data and time; pages hide the code."""
    cwd, out = quick_study["cwd"], report
    index = (out / "index.html").read_text(encoding="utf-8")
    links = set(re.findall(r"(?:href|src)='([^']+)'", index))
    assert all((out / link).is_file() for link in links)  # nothing dangles
    for name in _numbered():
        assert f"notebooks/{name}.html" in links
    for fig in (cwd / "figures").iterdir():
        assert f"figures/{fig.name}" in links, fig.name
    for table in (cwd / "results").iterdir():
        assert f"results/{table.name}" in links, table.name
    assert "quick" in index and "benchmark-quick" in index and "military_vehicle" in index
    timing = json.loads((cwd / "runs" / "notebooks" / "study_timing.json").read_text())
    assert timing["finished"] in index
    page = (out / "notebooks" / "02_baseline.html").read_text(encoding="utf-8")
    assert "data:image/png;base64" in page and "../index.html" in page  # figures embedded, a way back
    assert "hl-ipython3" not in page  # code cells hidden by default
    assert _report(cwd, tmp_path / "shown", "--show-input") == 0
    assert "hl-ipython3" in (tmp_path / "shown" / "notebooks" / "02_baseline.html").read_text(encoding="utf-8")


def test_the_report_reads_on_one_screen_without_a_network(quick_study, report):
    """Every page of the quick study's report stands alone (nothing fetched from http(s)://), shows no
    training line, progress bar or machine path, and every table it shows first is narrow: at most
    HEADLINE_COLUMNS columns or estimated to fit the window, the whole table collapsed below it."""
    from attrlib.reporting.html import HEADLINE_COLUMNS, MAX_WIDTH_PX
    from attrlib.study.report import remote_references

    cwd = quick_study["cwd"]
    pages = sorted(report.rglob("*.html"))
    assert len(pages) > len(_numbered())
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert remote_references(text) == [], page.name
        if page.parent.name == "notebooks":
            assert not LOG_OR_BAR.search(text), (page.name, LOG_OR_BAR.search(text).group(0))
            assert str(cwd) not in text and "ipykernel_" not in text, page.name  # warnings without paths
        shown = re.sub(r"<details.*?</details>", "", text, flags=re.DOTALL)  # the collapsed full tables
        for table in re.findall(r"<table class='attr'>.*?</table>", shown, re.DOTALL):
            rows = [re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.DOTALL) for row in table.split("</tr>")[:-1]]
            widths = [max(len(row[i]) for row in rows if i < len(row)) for i in range(len(rows[0]))]
            # shown whole beyond HEADLINE_COLUMNS only when it fits (13 px text: 7.5 px a character, 29 px padding)
            assert len(widths) <= HEADLINE_COLUMNS or sum(7.5 * w + 29 for w in widths) <= MAX_WIDTH_PX, \
                (page.name, len(widths))
