"""The README's results section is generated from result files, and each claim follows its interval."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from attrlib.errors import ConfigError
from attrlib.reporting.readme import BEGIN, END, claims, update_readme


def numbers(low: float, high: float) -> pd.DataFrame:
    rows = {
        "baseline": dict(accuracy=0.5, accuracy_low=0.45, accuracy_high=0.55, difference=0.0, difference_low=0.0,
                         difference_high=0.0, verdict="(the baseline)", uses_target_data=False, seeds=3, rotations=2,
                         selection="valsub", gap_closed_oracle=0.0, gap_closed_oracle_low=0.0, gap_closed_oracle_high=0.0),
        "better": dict(accuracy=0.6, accuracy_low=0.55, accuracy_high=0.65, difference=0.1, difference_low=low,
                       difference_high=high, verdict="", uses_target_data=False, seeds=3, rotations=2,
                       selection="valsub", gap_closed_oracle=0.25, gap_closed_oracle_low=0.1, gap_closed_oracle_high=0.4),
        "fine_tuning (target data)": dict(accuracy=0.9, accuracy_low=0.8, accuracy_high=1.0, difference=0.4,
                                          difference_low=0.3, difference_high=0.5, verdict="", uses_target_data=True,
                                          seeds=3, rotations=2, selection="valsub", gap_closed_oracle=0.9,
                                          gap_closed_oracle_low=0.8, gap_closed_oracle_high=1.0),
    }
    return pd.DataFrame.from_dict(rows, orient="index")


def test_a_technique_beats_the_baseline_only_where_its_paired_interval_excludes_zero():
    said = " ".join(claims(numbers(0.02, 0.18)))
    assert "Beat the baseline (paired interval above 0): better" in said
    said = " ".join(claims(numbers(-0.01, 0.18)))
    assert "Beat the baseline (paired interval above 0): none" in said
    assert "Not distinguishable from the baseline (interval contains 0): better" in said
    # a technique that trains on the held-out subclass never makes the "without target data" claims
    assert "fine_tuning" not in said and "at most 25 % (better" in said


def test_the_readme_is_rewritten_between_its_markers_and_check_mode_writes_nothing(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    numbers(0.02, 0.18).to_csv(results / "10_summary_numbers.csv")
    (results / "09_robustness.md").write_text("| a |\n|---|\n| 1 |\n")
    timing = tmp_path / "timing.json"
    timing.write_text(json.dumps(dict(profile="default", commit="abc", heldout="", cores=2, jobs=2, seconds=600,
                                      runs_trained=10, runs_reused_or_before=0)))
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\n{BEGIN}\nstale numbers typed by hand\n{END}\n\n## after\n")
    assert update_readme(readme, results, timing, check=True) is False
    assert "stale numbers" in readme.read_text()
    assert update_readme(readme, results, timing) is False
    text = readme.read_text()
    assert "stale numbers" not in text and text.startswith("# title") and text.endswith("## after\n")
    assert "`default` study" in text and "10.0 min" in text and "| a |" in text
    assert "*Not produced by this study" in text  # a missing table is named, not left stale
    assert str(tmp_path) not in text  # by its place in the repository, not a machine path
    assert update_readme(readme, results, timing, check=True) is True  # current now


def test_missing_markers_or_results_fail_with_what_to_do(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("no markers")
    with pytest.raises(ConfigError, match="must hold the markers"):
        update_readme(readme, tmp_path, tmp_path / "t.json")
    readme.write_text(f"{BEGIN}\n{END}\n")
    with pytest.raises(ConfigError, match="run the study first"):
        update_readme(readme, tmp_path / "nothing", tmp_path / "t.json")
