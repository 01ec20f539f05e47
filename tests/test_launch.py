"""The Dask launcher (`attrlib.launch`) against the local runner: the same run folders and the same results."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from attrlib import launch, runfolder, sweep
from attrlib.config import profile
from attrlib.errors import ConfigError

# measured, not computed: they differ between any two trainings of the same run
TIMING = ("train_seconds", "train_images_per_second", "prepare_seconds")
TINY = dict(steps=3, image_size=32, batch_size=16, checkpoints=1)


def _metrics(run):
    return {k: v for k, v in runfolder.load_metrics(run).items() if k not in TIMING}


# slow: measured 52 s and 103 s here (2 shared cores, load average 8 to 12), most of it two worker processes
# starting and importing torch (25 s + 48 s in a separate measurement); the tiny runs take a few seconds
@pytest.mark.slow
def test_a_local_dask_cluster_of_two_workers_trains_the_local_runner_s_runs(tiny_data, tmp_path, one_torch_thread):
    """Two techniques x two seeds as Configs, and a searched arm (two draws, then the chosen draw's seed):
    the cluster writes the folders the local runner writes (same ids, same predictions, same metrics)."""
    common = dict(data=str(tiny_data), **TINY)
    configs = [profile("quick", technique=t, seed=s, runs=str(tmp_path / "cluster"), **common)[0]
               for t in ("baseline", "weighted_sampling") for s in (0, 1)]
    arms = sweep.plan({"group_dro": {"technique": "group_dro"}}, "quick", seeds=(0,), draws=2,
                      runs=str(tmp_path / "cluster"), **common)
    assert len(arms) == 1 and len(arms[0].draws) == 2
    cluster = launch.launch([*configs, *arms, configs[0]], n_workers=2, threads_per_worker=1, progress=False)

    local = [sweep.train(c.replace(runs=str(tmp_path / "local")), progress=False) for c in configs]
    local += sweep.train_many({"group_dro": {"technique": "group_dro"}}, "quick", seeds=(0,), draws=2,
                              progress=False, runs=str(tmp_path / "local"), **common)["group_dro"]
    # the Configs once each, and the arm's two draws (seed 0: the chosen draw's seed is one of them)
    assert len(cluster) == 4 + 2 and len({d.name for d in cluster}) == 6
    local_ids = {f"{d.parent.name}/{d.name}" for d in (tmp_path / "local").glob("*/*") if d.is_dir()}
    assert {f"{d.parent.name}/{d.name}" for d in cluster} == local_ids
    for run in cluster:
        twin = tmp_path / "local" / run.parent.name / run.name
        assert runfolder.is_done(run) and runfolder.is_done(twin)
        assert (run / "predictions.csv").read_bytes() == (twin / "predictions.csv").read_bytes(), run
        assert _metrics(run) == _metrics(twin), run
    # the arm's seeds come from the draw the local search chose
    assert {d.name for d in local[4:]} <= {d.name for d in cluster}


def test_the_local_cluster_is_built_without_dask_s_trim_threshold(monkeypatch):
    """Dask's nanny would start each worker with MALLOC_TRIM_THRESHOLD_=65536 (a third of a launched run's CPU in
    page faults, docs/cost.md): the launcher's cluster is built with it unset (a nanny reads the setting when it is
    built) and leaves Dask's configuration as it was. The real workers' environment: the slow test below."""
    import dask

    key = "distributed.nanny.pre-spawn-environ"
    seen = {}

    def recorder(**kwargs):
        seen.update(kwargs, environ=dict(dask.config.get(key)))
        return "cluster"

    monkeypatch.setattr(launch, "LocalCluster", recorder)
    assert dask.config.get(key).get("MALLOC_TRIM_THRESHOLD_") is not None  # Dask's default: what is undone
    assert launch.local_cluster(3, 2) == "cluster"
    assert seen["environ"]["MALLOC_TRIM_THRESHOLD_"] is None and seen["n_workers"] == 3
    assert seen["env"] == {"OMP_NUM_THREADS": "2"} and seen["threads_per_worker"] == 1
    assert dask.config.get(key).get("MALLOC_TRIM_THRESHOLD_") is not None


@pytest.mark.slow
def test_the_local_cluster_s_workers_run_without_dask_s_trim_threshold():
    import os

    from dask.distributed import Client

    with launch.local_cluster(1, 2) as cluster, Client(cluster) as client:
        environ = next(iter(client.run(lambda: dict(os.environ)).values()))
    assert "MALLOC_TRIM_THRESHOLD_" not in environ and environ["OMP_NUM_THREADS"] == "2"


def test_count_and_bad_items(tiny_data, tmp_path):
    config = profile("quick", data=str(tiny_data), runs=str(tmp_path), **TINY)[0]
    arms = sweep.plan(("baseline", "fine_tuning"), "quick", seeds=(0, 1, 2), draws=3, data=str(tiny_data),
                      runs=str(tmp_path), **TINY)
    runs, steps = launch.count([config, config, *arms])
    # the Config once; per arm: 3 draws at seed 0 + seeds 1 and 2 of the chosen draw
    assert runs == 1 + 2 * (3 + 2)
    fine_tuning = launch.run_steps(arms[1].draws[0])
    assert fine_tuning != TINY["steps"] and steps == 6 * TINY["steps"] + 5 * fine_tuning
    with pytest.raises(ConfigError, match="Configs or sweep.Arm"):
        launch.launch(["baseline"], progress=False)
    with pytest.raises(ConfigError, match="n_workers"):
        launch.launch([config], n_workers=0, progress=False)


def test_plan_is_what_train_many_trains(tiny_data, tmp_path, monkeypatch):
    """train_many trains exactly plan's arms: its draws, then the chosen draw's seeds."""
    trained = []

    def fake_train(config, progress=True, wait=True):
        trained.append(config)
        return tmp_path / config.technique / str(len(trained))

    monkeypatch.setattr(sweep, "train", fake_train)
    monkeypatch.setattr(sweep, "best_draw", lambda dirs, rule: 1)
    kwargs = dict(seeds=(0, 3), draws=2, rotations=[("military_vehicle",), ("car",)], data=str(tiny_data),
                  runs=str(tmp_path), **TINY)
    sweep.train_many(("baseline", "group_dro"), "quick", progress=False, **kwargs)
    arms = sweep.plan(("baseline", "group_dro"), "quick", **kwargs)
    expected = [c for arm in arms for c in arm.draws] + [c for arm in arms for c in arm.runs(1)]
    assert sorted(json.dumps(c.to_dict(), sort_keys=True) for c in trained) == \
        sorted(json.dumps(c.to_dict(), sort_keys=True) for c in expected)


def test_launch_dry_run_counts_the_study_s_runs_and_trains_nothing(tiny_data, tmp_path, monkeypatch, capsys):
    from attrlib import cli, techniques
    from attrlib.study import closing
    from attrlib.study.jobs import study_jobs

    monkeypatch.chdir(tmp_path)
    arms = study_jobs("quick", str(tiny_data))
    labels = {arm.label for arm in arms}
    # every technique (02-10), notebook 07's front-end ablation, the profile's arms of notebook 11 (and not the
    # others: the knob has its effect); no oracle on a user's data
    from attrlib.config import PROFILES as _PROFILES
    chosen, _ = closing.chosen_arms(_PROFILES["quick"]["notebook"]["closing_arms"])
    assert set(techniques.available()) <= labels and set(chosen) <= labels
    assert not (set(closing.ARMS) - set(chosen) - set(techniques.available())) & labels
    assert {"baseline_npr", "crop_16px", "resize_16px"} <= labels and "oracle" not in labels
    # notebook 12: its techniques and the profile's arms of notebook 11, without the first generator it can leave out
    from attrlib.config import PROFILES
    from attrlib.study import open_world

    left_out = {a.label: a.draws[0].unknown_generators for a in arms if a.draws[0].unknown_generators}
    assert set(left_out) == set(open_world.open_world_jobs(open_world.TECHNIQUES,
                                                           PROFILES["quick"]["notebook"]["open_world_arms"]))
    assert set(left_out.values()) == {tuple(open_world.unknown_rotations(tiny_data, ("military_vehicle",), 1))}
    # a run two notebooks ask for is one arm: notebook 11's srm arm is notebook 07's baseline_srm
    assert len({repr(a.draws[0].to_dict()) for a in arms}) == len(arms)
    # a profile that names its notebooks trains only theirs: claims runs notebook 11 alone, so none of 02-10's
    # techniques or ablation and none of notebook 12's runs without a generator (they were half a claims launch)
    claims = study_jobs("claims", str(tiny_data))
    chosen_claims, seeds_claims = closing.chosen_arms(_PROFILES["claims"]["notebook"]["closing_arms"])
    assert not any(a.draws[0].unknown_generators for a in claims)
    # target_references: notebook 11 trains each model's target-data reference, unless the profile leaves them out;
    # claims' "real" trains them on a folder without an unbiased twin (this one), where they are the only references
    assert _PROFILES["claims"]["notebook"]["target_references"] == "real"
    with_refs = {a.label: a.draws[0] for a in claims}
    assert set(with_refs) == {*chosen_claims, *seeds_claims, *closing.reference_jobs()}
    extra = {k: c for k, c in with_refs.items() if k not in {*chosen_claims, *seeds_claims}}
    assert {c.technique for c in extra.values()} == {"target_reference"}
    monkeypatch.setitem(_PROFILES, "claims", {**_PROFILES["claims"], "notebook": {
        **_PROFILES["claims"]["notebook"], "target_references": False}})
    assert {a.label for a in study_jobs("claims", str(tiny_data))} == {*chosen_claims, *seeds_claims}  # off: none
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    # with the knob off in a profile that runs notebook 10 too, notebook 10 keeps its baseline's reference
    assert {"baseline target_reference", "local_srm_rgb target_reference"} <= labels  # on: notebook 11's (10's is
    # the baseline's, the same run, planned once)
    monkeypatch.setitem(_PROFILES, "quick", {**_PROFILES["quick"], "notebook": {
        **_PROFILES["quick"]["notebook"], "target_references": False}})
    off = {a.label: a.draws[0].technique for a in study_jobs("quick", str(tiny_data))}
    assert off["target_reference"] == "target_reference"
    assert [k for k, v in off.items() if v == "target_reference"] == ["target_reference"]
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    # a profile of notebook 12 alone: its arms on every generator and without the one it leaves out, nothing else
    monkeypatch.setitem(_PROFILES, "quick", {**_PROFILES["quick"], "notebooks": ("12",)})
    alone = study_jobs("quick", str(tiny_data))
    twelve = set(open_world.open_world_jobs(open_world.TECHNIQUES, _PROFILES["quick"]["notebook"]["open_world_arms"]))
    assert {a.label for a in alone} == twelve
    assert {bool(a.draws[0].unknown_generators) for a in alone} == {True, False}
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    # only (`attrlib launch --only`, as `attrlib study --only`): the runs of the notebooks whose name starts with it,
    # instead of the profile's; notebook 11 alone on the quick profile is its arms and references, without 02-10's
    # techniques, 07's ablation or 12's runs
    notebooks = Path(__file__).resolve().parents[1] / "notebooks"
    eleven = study_jobs("quick", str(tiny_data), only=("11",), notebooks=notebooks)
    assert eleven == study_jobs("quick", str(tiny_data), only=("11_closing",), notebooks=notebooks)  # a name's prefix
    chosen_quick = {*chosen, *closing.chosen_arms(_PROFILES["quick"]["notebook"]["closing_arms"])[1]}
    assert {a.label for a in eleven} == chosen_quick | set(closing.reference_jobs())
    assert not any(a.draws[0].unknown_generators for a in eleven) and "baseline_npr" not in {a.label for a in eleven}
    assert {a.label for a in study_jobs("quick", str(tiny_data), only=("12",), notebooks=notebooks)} == twelve
    # on claims (notebook 11 alone), --only 12 plans notebook 12, as `attrlib study --profile claims --only 12` runs it
    assert any(a.draws[0].unknown_generators for a in study_jobs("claims", str(tiny_data), only=("12",),
                                                                   notebooks=notebooks))
    with pytest.raises(ConfigError, match="--only 13 matches no notebook.*11_closing_the_gap.ipynb"):
        study_jobs("quick", str(tiny_data), only=("13",), notebooks=notebooks)
    runs, steps = launch.count(arms)
    assert cli.main(["launch", "--profile", "quick", "--data", str(tiny_data), "--only", "11", "--notebooks",
                     str(notebooks), "--dry-run"]) == 0
    assert f": {len(eleven)} jobs" in capsys.readouterr().out
    assert cli.main(["launch", "--profile", "quick", "--data", str(tiny_data), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"{len(arms)} jobs" in out and f"{runs} runs" in out and f"{steps:,} optimiser steps" in out
    # --seeds: every run once per seed (the quick profile has one seed, no search: twice the runs with two)
    assert cli.main(["launch", "--profile", "quick", "--data", str(tiny_data), "--seeds", "0,1", "--dry-run"]) == 0
    assert f"{2 * runs} runs" in capsys.readouterr().out
    assert not (tmp_path / "runs").exists()
