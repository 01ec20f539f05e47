"""`attrlib predict --study` (the model a finished study selected) and the provenance every prediction carries:
the run id and the commit of the code that trained the run (issue 22)."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

import attrlib
from attrlib import cli, runfolder, sweep
from attrlib.config import PROFILES
from attrlib.errors import ConfigError
from attrlib.evaluation import select_arm
from attrlib.evaluation.inference import provenance_path
from attrlib.provenance import git_commit, now, study_record, write_provenance
from attrlib.reporting import save_table
from attrlib.study import closing, selected

from conftest import TINY_HELDOUT

REPO = Path(__file__).resolve().parents[1]
ARMS = ("baseline", "srm")  # two of notebook 11's arms, each one quick run on the tiny data


def _common(tiny_data, runs) -> dict:
    return dict(data=str(tiny_data), runs=str(runs), device="cpu", on_bad="raise")


def _study(root: Path, tiny_data, notebook: str, status: str = "finished") -> Path:
    """A study's results folder as `attrlib study --profile quick` leaves it: provenance.json naming `notebook`."""
    results = root / "results"
    params = dict(profile="quick", data=str(tiny_data), heldout=TINY_HELDOUT, runs=str(root / "runs"),
                  figures=str(root / "figures"), results=str(results), device="cpu", threads=1, on_bad="raise")
    write_provenance(results, study_record(
        commit=git_commit(REPO), profile="quick", data=tiny_data, rotations=[(TINY_HELDOUT,)],
        seeds=PROFILES["quick"]["seeds"], parameters=params, settings=PROFILES["quick"], notebooks=[notebook],
        started=now(), finished=now() if status != "running" else None, status=status))
    return results


@pytest.fixture(scope="module")
def study(tiny_data, tmp_path_factory):
    """Notebook 11 of a quick study on the tiny data, two arms: their runs, its selection table (the arm it did
    *not* rank first, so that a test can tell the file was read), provenance.json."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("study")
    runs = sweep.train_many({a: closing.ARMS[a] for a in ARMS}, "quick", progress=False,
                            rotations=[(TINY_HELDOUT,)], **_common(tiny_data, root / "runs"))
    results = _study(root, tiny_data, "11_closing_the_gap.ipynb")
    ranked = select_arm(runs, list(ARMS))
    other = next(a for a in ARMS if a != ranked["chosen"].iat[0])
    save_table(ranked.assign(chosen=other), selected.SELECTION_TABLE, results)
    return {"root": root, "results": results, "runs": runs, "chosen": other}


def test_training_records_the_commit_and_every_prediction_carries_it(study, tiny_data, tmp_path):
    """metrics.json records the commit of the code that trained the run; every predicted row carries it with
    the run id, and the provenance file beside the CSV also names the commit that predicted."""
    commit = git_commit(REPO)
    if commit is None:
        pytest.skip("not a git checkout: there is no commit to record")
    run = study["runs"]["baseline"][0]
    assert runfolder.load_metrics(run)["commit"] == commit
    out = tmp_path / "pred.csv"
    assert cli.main(["predict", "--run", str(run), str(tiny_data / "stylegan3"), "--out", str(out),
                     "--progress", "off"]) == 0
    table = pd.read_csv(out, dtype={"commit": str})
    assert len(table) and (table["commit"] == commit).all() and (table["run_id"] == run.name).all()
    about = json.loads(provenance_path(out).read_text())
    assert about["commit"] == commit and about["predict_commit"] == commit and about["run_id"] == run.name
    assert about["n_images"] == len(table) and "study" not in about


def test_predict_study_uses_the_arm_the_study_selected(study, tiny_data, tmp_path, capsys):
    out = tmp_path / "pred.csv"
    assert cli.main(["predict", "--study", str(study["root"]), str(tiny_data / "stylegan3"), "--out", str(out),
                     "--progress", "off"]) == 0
    expected = study["runs"][study["chosen"]][0]
    table = pd.read_csv(out)
    assert (table["run_id"] == expected.name).all()
    about = json.loads(provenance_path(out).read_text())
    assert about["study"]["arm"] == study["chosen"] and about["study"]["rotation"] == TINY_HELDOUT
    assert about["study"]["source"].endswith("11_selection.csv") and about["run"] == str(expected)
    assert f"arm {study['chosen']}" in capsys.readouterr().out
    # the results folder itself names the same study; the Python form gives the same table
    api = attrlib.predict(images=tiny_data / "stylegan3", study=study["results"], progress=False)
    assert (api["run_id"] == expected.name).all()
    assert list(api["unknown_score"]) == list(table["unknown_score"])


def test_predict_study_refuses_what_it_cannot_name(study, tiny_data, tmp_path, capsys):
    images = str(tiny_data / "stylegan3")
    with pytest.raises(ConfigError, match="rotation 'horse' is not among"):
        selected.study_model(study["root"], rotation="horse")
    with pytest.raises(ConfigError, match="seed 7 is not among"):
        selected.study_model(study["root"], seed=7)
    with pytest.raises(ConfigError, match="either a run folder"):
        attrlib.predict(study["runs"]["baseline"][0], images, study=study["root"])
    assert cli.main(["predict", "--study", str(tmp_path), images, "--out", str(tmp_path / "p.csv")]) == 2
    assert str(tmp_path / "results" / "provenance.json") in capsys.readouterr().err
    assert cli.main(["predict", "--run", str(study["runs"]["baseline"][0]), "--seed", "0", images]) == 2
    assert "--study" in capsys.readouterr().err
    # an unfinished study: its notebook 11 still running
    running = _study(tmp_path / "running", tiny_data, "11_closing_the_gap.ipynb", status="running")
    with pytest.raises(ConfigError, match=r"provenance\.json: the study that runs notebook 11 has not finished "
                                          r"\(status 'running'"):
        selected.study_model(running.parent)
    # notebook 11 finished but its selection table is gone
    finished = _study(tmp_path / "no_table", tiny_data, "11_closing_the_gap.ipynb")
    with pytest.raises(ConfigError, match=r"11_selection\.csv does not exist"):
        selected.study_model(finished)
    # neither notebook 10 nor 11 ran
    other = _study(tmp_path / "early", tiny_data, "02_baseline.ipynb")
    with pytest.raises(ConfigError, match="has not finished notebook 11"):
        selected.study_model(other)
    # the runs are gone: the missing folder is named
    moved = _study(tmp_path / "moved", tiny_data, "11_closing_the_gap.ipynb")
    pd.read_csv(study["results"] / "11_selection.csv", index_col=0).to_csv(moved / "11_selection.csv")
    with pytest.raises(ConfigError, match=r"moved.*runs.*is not finished"):
        selected.study_model(moved)


def test_without_notebook_11_rule_b_chooses_among_notebook_10s_techniques(study, tiny_data, monkeypatch):
    """Only notebook 10 finished: rule (b) over its techniques (those without target data), from their runs."""
    techniques = {"baseline": "", "weighted_sampling": "", "fine_tuning": ""}
    monkeypatch.setattr(selected.techniques, "available", lambda: techniques)
    root = study["root"].parent / "nb10"
    runs = sweep.train_many(["baseline", "weighted_sampling"], "quick", progress=False, rotations=[(TINY_HELDOUT,)],
                            **_common(tiny_data, root / "runs"))
    _study(root, tiny_data, "10_results.ipynb")
    chosen = select_arm(runs, ["baseline", "weighted_sampling"])["chosen"].iat[0]
    model = selected.study_model(root)
    assert model.arm == chosen and model.run == runs[chosen][0] and "notebook 10" in model.source
    assert not list((root / "runs").glob("fine_tuning/*"))  # a technique using target data is no candidate
