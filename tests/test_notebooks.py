"""Every technique notebook (02-07) executes under papermill with the `quick` profile on the tiny data.

The notebooks share one runs folder, as in the study, so 04 and 06 reuse 02's baseline runs.
"""
from __future__ import annotations

from pathlib import Path

import pytest

pm = pytest.importorskip("papermill")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
TECHNIQUE_NOTEBOOKS = ["02_baseline", "03_weighted_sampling", "04_fine_tuning", "05_adversarial_debiasing",
                       "06_seed000_blind_head_and_runtime_adversarial", "07_beyond_debiasing"]


@pytest.fixture(scope="module")
def study_dirs(tmp_path_factory):
    return tmp_path_factory.mktemp("study")


@pytest.mark.parametrize("name", TECHNIQUE_NOTEBOOKS)
def test_notebook_runs_with_quick_profile(name, tiny_data, study_dirs):
    params = dict(profile="quick", data=str(tiny_data), heldout="military_vehicle", runs=str(study_dirs / "runs"),
                  figures=str(study_dirs / "figures"), results=str(study_dirs / "results"), device="cpu", threads=1)
    pm.execute_notebook(str(NOTEBOOKS / f"{name}.ipynb"), str(study_dirs / f"{name}.ipynb"), parameters=params,
                        kernel_name="python3", progress_bar=False, cwd=str(study_dirs))
    prefix = name[:2]
    assert list((study_dirs / "figures").glob(f"{prefix}_*.png")) and list((study_dirs / "figures").glob(f"{prefix}_*.pdf"))
    assert list((study_dirs / "results").glob(f"{prefix}_*.csv"))
