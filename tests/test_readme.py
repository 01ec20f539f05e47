"""The README's results section is generated from result files, and each claim follows its interval."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from attrlib.errors import ConfigError
from attrlib.study.readme import BEGIN, END, HEADLINE_BEGIN, HEADLINE_END, claims, update_readme


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


def _record(commit, notebooks, started="2026-01-01T00:00:00+0000", profile="default", data="data/default"):
    from attrlib.provenance import study_record

    return study_record(commit=commit, profile=profile, data=data, rotations=[("bed",), ("car", "cat")], seeds=(0, 1),
                        parameters=dict(profile=profile, device="cpu", threads=1), settings=dict(notebook=dict(n_boot=50)),
                        notebooks=notebooks, started=started, finished="2026-01-01T01:00:00+0000", status="finished")


def test_provenance_is_written_atomically_and_a_later_study_takes_over_its_notebooks(tmp_path):
    from attrlib.provenance import producer, read_provenance, write_provenance

    results = tmp_path / "results"
    write_provenance(results, _record("a" * 40, ["01_x.ipynb", "10_results.ipynb", "11_closing.ipynb"]))
    write_provenance(results, _record("b" * 40, ["11_closing.ipynb"], started="2026-01-02T00:00:00+0000"))
    prov = read_provenance(results)
    assert [s["commit"] for s in prov["studies"]] == ["a" * 40, "b" * 40]
    assert prov["studies"][0]["notebooks"] == ["01_x.ipynb", "10_results.ipynb"]  # 11 is the later study's now
    assert producer(prov, "10")["commit"] == "a" * 40 and producer(prov, "11")["commit"] == "b" * 40
    first = prov["studies"][0]
    assert first["data_fingerprint"].startswith("missing:") and first["seeds"] == [0, 1]  # no such folder here
    assert first["rotations"] == [["bed"], ["car", "cat"]] and first["versions"]["torch"] != "unknown"
    # the same study's final record replaces its running one; a study left with no notebook is dropped
    write_provenance(results, _record("c" * 40, ["01_x.ipynb", "10_results.ipynb", "11_closing.ipynb"],
                                      started="2026-01-03T00:00:00+0000"))
    assert [s["commit"] for s in read_provenance(results)["studies"]] == ["c" * 40]
    assert not list(results.glob("*.tmp*")) and not list(results.glob(".*"))
    (results / "provenance.json").write_text("{not json")
    with pytest.raises(ConfigError, match="provenance.json cannot be read"):
        read_provenance(results)


def _results(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    numbers(0.02, 0.18).to_csv(results / "10_summary_numbers.csv")
    numbers(0.02, 0.18).to_csv(results / "11_ablation_numbers.csv")
    return results


def test_each_generated_part_names_the_study_that_produced_it(tmp_path):
    from attrlib.provenance import write_provenance
    from attrlib.study.readme import recorded_commits

    results = _results(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text(f"{BEGIN}\n{END}\n")
    update_readme(readme, results, tmp_path / "no_timing.json")
    assert "names no study that ran notebook 11" in readme.read_text() and recorded_commits(readme) == []
    write_provenance(results, _record("a" * 40, ["10_results.ipynb"]))
    write_provenance(results, _record("b" * 40 + "-dirty", ["11_closing.ipynb"], profile="claims",
                                      started="2026-01-02T00:00:00+0000"))
    assert update_readme(readme, results, tmp_path / "no_timing.json", check=True) is False  # provenance changed it
    update_readme(readme, results, tmp_path / "no_timing.json")
    text = readme.read_text()
    closing, rest = text.split("### The seeds' techniques")
    assert f"commit `{'b' * 40}-dirty`, profile `claims`" in closing and f"commit `{'a' * 40}`" in rest
    for part in (closing, rest):
        assert "data `data/default` (missing:" in part and "seeds 0, 1" in part and "rotations bed; car+cat" in part
        assert '"device": "cpu"' in part and '"n_boot": 50' in part
    assert recorded_commits(readme) == ["b" * 40 + "-dirty", "a" * 40]
    assert str(tmp_path) not in text


def _git(repo, *args):
    import subprocess

    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args], cwd=repo,
                          check=True, capture_output=True, text=True).stdout.strip()


@pytest.mark.parametrize("page", ["README.md", "docs/results.md"])  # the page at the top or in a folder
def test_readme_check_fails_naming_both_commits_when_the_code_changed_since(tmp_path, capsys, page):
    from attrlib.cli import main
    from attrlib.provenance import write_provenance
    from attrlib.study.readme import commit_check

    repo = tmp_path / "repo"
    (repo / "attrlib").mkdir(parents=True)
    (repo / "attrlib" / "x.py").write_text("A = 1\n")
    (repo / page).parent.mkdir(parents=True, exist_ok=True)
    (repo / page).write_text(f"# r\n{BEGIN}\n{END}\n")
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "first")
    first = _git(repo, "rev-parse", "HEAD")
    results = _results(tmp_path)  # outside the repository, as an ignored results/ would be
    write_provenance(results, _record(first, ["10_results.ipynb", "11_closing.ipynb"]))
    readme, timing = repo / page, tmp_path / "no_timing.json"
    update_readme(readme, results, timing)
    _git(repo, "commit", "-qam", "the README generated at the first commit")
    check = commit_check(readme)
    assert check.ok and "nothing under attrlib/ or notebooks/ changed" in " ".join(check.messages)
    args = ["readme", "--check", "--readme", str(readme), "--results", str(results), "--timing", str(timing)]
    assert main(args) == 0
    if page != "README.md":  # --headline none: only the --readme page is generated, the README's headline is left
        (repo / "README.md").write_text(f"# r\n{HEADLINE_BEGIN}\nthe benchmark's headline\n{HEADLINE_END}\n")
        capsys.readouterr()
        assert main([*args, "--headline", "none"]) == 0  # --check: only the page is checked, and it is current
        assert main([*args[:1], *args[2:], "--headline", "none"]) == 0
        assert "--headline none" in capsys.readouterr().out
        assert "the benchmark's headline" in (repo / "README.md").read_text()
        assert main([*args[:1], *args[2:]]) == 0  # without it, the headline is generated from these results
        assert "the benchmark's headline" not in (repo / "README.md").read_text()
        assert (repo / "docs" / "headline.png").is_file()  # its figure beside the README, not in the working folder
        (repo / "README.md").unlink()
    (repo / "attrlib" / "x.py").write_text("A = 2\n")  # the code that produced the numbers changes
    _git(repo, "commit", "-qam", "second")
    second = _git(repo, "rev-parse", "HEAD")
    check = commit_check(readme)
    said = " ".join(check.messages)
    assert not check.ok and f"generated at commit {first}; HEAD is {second}" in said and "attrlib/x.py" in said
    capsys.readouterr()
    assert main(args) == 1  # the results still match the README: the commit alone fails it
    out = capsys.readouterr().out
    assert f"HEAD is {second}" in out and "current with its results" in out
    # a commit git does not know (another clone, a shallow history) is said to be unknown, and fails
    readme.write_text(readme.read_text().replace(first, "0123456789abcdef" * 2 + "01234567"))
    check = commit_check(readme)
    assert not check.ok and "is unknown to git here" in " ".join(check.messages)


def test_the_readme_headline_is_a_generated_figure_and_a_short_table_led_by_the_unexplored_rotations(tmp_path):
    from attrlib.study.readme import HEADLINE_BEGIN, HEADLINE_END, HEADLINE_ROWS, update_headline
    results = tmp_path / "results"
    results.mkdir()
    many = pd.concat([numbers(0.02, 0.18)] + [numbers(0.02, 0.18).loc[["better"]].rename(index={"better": f"arm{i}"})
                                              for i in range(10)])
    many.to_csv(results / "11_ablation_numbers.csv")
    page, figure = tmp_path / "README.md", tmp_path / "docs" / "headline.png"
    page.write_text(f"# t\n\n{HEADLINE_BEGIN}\ntyped by hand 0.49\n{HEADLINE_END}\n\n## after\n")
    assert update_headline(page, results, figure=figure, check=True) is False and not figure.exists()
    assert update_headline(page, results, figure=figure) is False
    text = page.read_text()
    block = text.split(HEADLINE_BEGIN)[1].split(HEADLINE_END)[0]
    assert "typed by hand" not in block and figure.is_file() and "](docs/headline.png)" in block
    table = [line for line in block.splitlines() if line.startswith("| ")]
    assert len(table) - 1 <= HEADLINE_ROWS and all(line.count(" | ") + 1 <= 6 for line in table)
    assert "fine_tuning" not in block and "every rotation (the explored ones included)" in block
    assert "Benchmark only" in block and "above 100 % means" in block
    assert update_headline(page, results, figure=figure, check=True) is True
    # the rotations never read while designing lead where they exist; real data adds a panel and its table
    numbers(0.02, 0.18).to_csv(results / "11_ablation_unexplored_numbers.csv")
    real = tmp_path / "real"
    real.mkdir()
    numbers(-0.1, 0.1).to_csv(real / "10_summary_numbers.csv")
    assert update_headline(page, results, real_results=real, figure=figure, check=True) is False
    update_headline(page, results, real_results=real, figure=figure)
    block = page.read_text().split(HEADLINE_BEGIN)[1]
    assert "never read while designing" in block and "Real data (notebook 10)" in block and "Benchmark only" not in block
    # a real folder's notebook-11 numbers are not labelled as the benchmark's unexplored rotations: on real data every
    # rotation is one the arms' design (on the benchmark) did not read, and the label says so
    (real / "10_summary_numbers.csv").unlink()
    numbers(-0.1, 0.1).to_csv(real / "11_ablation_unexplored_numbers.csv")
    update_headline(page, results, real_results=real, figure=figure)
    block = page.read_text().split(HEADLINE_BEGIN)[1]
    assert "Real data (notebook 11, every rotation: the arms were designed on the benchmark)" in block


def _arms(scores: dict[str, float], balanced: dict[str, float] | None = None) -> pd.DataFrame:
    rows = {arm: dict(accuracy=a, accuracy_low=a - 0.05, accuracy_high=a + 0.05, difference=0.0, difference_low=0.0,
                      difference_high=0.0, uses_target_data=False, seeds=5, rotations=2,
                      **({"balanced_accuracy": balanced[arm]} if balanced else {}))
            for arm, a in scores.items()}
    return pd.DataFrame.from_dict(rows, orient="index")


def test_the_real_data_lead_unless_the_benchmark_orders_the_arms_as_they_do(tmp_path):
    """Issue 17 §7: with a study on real data, the README gives the rank agreement of the arms both ran (Kendall's
    tau, one-sided, and Spearman's rho on held-out balanced accuracy where both have it) and leads with the
    benchmark only where its ordering carries over; otherwise the real data come first, figure and table."""
    from attrlib.study.readme import arm_rank_agreement, headline_section

    bench = {f"arm{i}": 0.9 - 0.05 * i for i in range(7)}
    same = {f"arm{i}": 0.6 - 0.04 * i for i in range(7)}
    reversed_ = {f"arm{i}": 0.3 + 0.04 * i for i in range(7)}
    results, real = tmp_path / "results", tmp_path / "real"
    results.mkdir(), real.mkdir()
    _arms(bench).to_csv(results / "11_ablation_numbers.csv")
    _arms(same).to_csv(real / "11_ablation_numbers.csv")
    text, panels = headline_section(results, real, page=tmp_path / "README.md")
    assert list(panels)[0].startswith("embedded benchmark") and "carries over to real images" in text
    assert text.index("Real data (") > text.index("| arm ")  # the benchmark's table first
    agreement = arm_rank_agreement(_arms(bench), _arms(same))
    assert agreement.kendall == pytest.approx(1.0) and agreement.p_value < 0.01 and agreement.metric == "accuracy"
    _arms(reversed_).to_csv(real / "11_ablation_numbers.csv")
    text, panels = headline_section(results, real, page=tmp_path / "README.md")
    assert list(panels)[0].startswith("real data") and "does not carry over" in text
    assert text.index("Real data (") < text.index("The embedded benchmark:")
    assert "Kendall's tau = -1.00" in text
    # balanced accuracy decides where both tables have it (a real test set is imbalanced): here it agrees
    agreement = arm_rank_agreement(_arms(bench, balanced=same), _arms(reversed_, balanced=same))
    assert agreement.metric == "balanced_accuracy" and agreement.carries_over
    # too few arms in common: nothing to compare, and the real data lead
    few = arm_rank_agreement(_arms(bench), _arms({"arm0": 0.5, "arm1": 0.4, "other": 0.3}))
    assert few.arms == ["arm0", "arm1"] and not few.carries_over and "too few" in few.sentence()


def test_a_study_of_notebook_11_alone_writes_its_section_and_says_what_it_did_not_run(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    page = tmp_path / "results.md"
    page.write_text(f"{BEGIN}\n{END}\n")
    with pytest.raises(ConfigError, match="run the study first"):
        update_readme(page, results, tmp_path / "t.json")
    numbers(0.02, 0.18).to_csv(results / "11_ablation_numbers.csv")  # the claims profile runs notebook 11 only
    assert update_readme(page, results, tmp_path / "t.json") is False
    text = page.read_text()
    assert "Closing the gap" in text and "Notebooks 01-10 were not run by this study" in text
    assert "The seeds' techniques and the protocol" not in text


def test_the_headline_shows_rule_b_and_its_ensemble_right_after_the_baseline(tmp_path):
    from attrlib.study.closing import SELECTED, ensemble_label
    from attrlib.study.readme import _source_numbers
    table = _arms({"a": 0.9, "b": 0.8, ensemble_label(3): 0.5, SELECTED: 0.6, "baseline": 0.4})
    table.to_csv(tmp_path / "11_ablation_numbers.csv")
    numbers, _, _ = _source_numbers(tmp_path)
    assert list(numbers.index) == ["baseline", SELECTED, ensemble_label(3), "a", "b"]
