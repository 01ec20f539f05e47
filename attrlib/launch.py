"""A sweep's runs on a Dask cluster: every run an independent task, with the same run folders as the local runner.

    launch(configs_or_arms, scheduler=None, n_workers=2, threads_per_worker=1) -> [run folders]

A task is `sweep.train(config)`: it checks, locks, reuses or trains one run folder, so a task that runs twice
(a retried task, two arms sharing a run, a notebook training beside the cluster) trains the run once and
reuses it. An `sweep.Arm` with several hyper-parameter draws trains its draws first; when they are done, a
task picks the best (`sweep.best_draw`, the sweep's own rule) and its seeds follow. Nothing else is shared:
the data and runs folders must be ones every worker sees, at the paths the Configs give (relative paths: start
the workers in the launcher's folder, on a shared file system across machines).

Dask distributed because one API covers every place the study runs: `LocalCluster` on one machine (the
default here), `dask scheduler` / `dask worker ADDRESS` across machines, dask-jobqueue on SLURM or PBS,
one worker per GPU on a GPU box; its scheduler retries a task whose worker died, and its futures are
exactly our independent runs. (Ray is heavier to install for the same; submitit covers SLURM only.)
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Iterable

import dask
import torch
from dask.distributed import Client, LocalCluster, as_completed

from . import sweep, techniques
from .config import Config
from .errors import AttrlibError, ConfigError

RETRIES = 2  # a task whose worker died (killed, out of memory, a machine lost) runs again elsewhere
# Dask's nanny starts every worker with MALLOC_TRIM_THRESHOLD_=65536 (`distributed.nanny.pre-spawn-environ`): glibc
# then returns freed memory at once and fixes its thresholds, so each step of a run faults its tensors' pages in
# afresh: a third of a launched claims run's CPU was system time, under 2 % without it (docs/cost.md; one run alone,
# benchmarks/bench_launch_memory.py: 2.3x the system time, 1.17x the CPU). The local cluster's workers keep
# glibc's own behaviour, as `attrlib train` has it (None unsets a pre-spawn variable); workers you start yourself
# get it from the same setting in your Dask configuration.
WORKER_CONFIG = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}


class LaunchError(AttrlibError):
    """A run failed on the cluster; the message names it and its error."""


def local_cluster(n_workers: int, threads_per_worker: int) -> LocalCluster:
    """A Dask cluster of `n_workers` processes on this machine, one task at a time each, `threads_per_worker`
    torch threads inside it, glibc's own memory behaviour (WORKER_CONFIG), no dashboard."""
    with dask.config.set(WORKER_CONFIG):
        return LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None,
                            env={"OMP_NUM_THREADS": str(threads_per_worker)})


def run_steps(config: Config) -> int:
    """The optimiser steps a run trains: its technique's own `steps` (fine_tuning's), else the config's; a
    cross-fitted technique's assembled run (target_reference) trains its `folds` fold runs."""
    cls = techniques.get(config.technique)
    own = {**cls.defaults, **config.technique_params}
    folds = int(own["folds"]) if cls.cross_fit and own["fold"] < 0 else 1
    return folds * int(own.get("steps", config.steps))


def count(items: Iterable[Config | sweep.Arm]) -> tuple[int, int]:
    """(runs, optimiser steps) that `launch` trains at most: every Config, every arm's draws and its seeds
    (a draw that wins is trained for its other seeds; the chosen draw is not known before, so each arm's
    seeds are counted from its first draw). Runs that appear twice are counted once; a technique's upstream
    run (fine_tuning's baseline) is trained by `sweep.train` inside the task and is not counted."""
    seen: dict[str, int] = {}
    for item in items:
        for config in _expand(item):
            seen.setdefault(_key(config), run_steps(config))
    return len(seen), sum(seen.values())


def launch(items: Iterable[Config | sweep.Arm], scheduler: str | None = None, n_workers: int = 2,
           threads_per_worker: int = 1, progress: bool = True) -> list[Path]:
    """Train (or reuse) every Config and every arm (draws, then the chosen draw's seeds) on a Dask cluster and
    return the run folders, each once, in the order given (an arm: its draws, then its seeds).

    scheduler: the address of a running Dask scheduler (`dask scheduler`, workers started with
    `dask worker ADDRESS --nthreads 1`); None starts a `LocalCluster` of `n_workers` processes for this call.
    threads_per_worker: torch CPU threads of each run (each worker runs one task at a time when started so).
    """
    items = list(items)
    if int(n_workers) < 1 or int(threads_per_worker) < 1:
        raise ConfigError(f"n_workers ({n_workers}) and threads_per_worker ({threads_per_worker}) must be 1 or more")
    for item in items:
        if not isinstance(item, (Config, sweep.Arm)):
            raise ConfigError(f"launch takes Configs or sweep.Arm items, not {type(item).__name__}")
        for config in _expand(item):  # every parameter checked here, before a task starts
            config.validate()
            techniques.get(config.technique).check_params(config.technique_params)
    cluster = None
    if scheduler is None:
        # one task per worker process (Dask's threads), `threads_per_worker` torch threads inside it
        cluster = local_cluster(int(n_workers), int(threads_per_worker))
    try:
        with Client(cluster if cluster is not None else scheduler) as client:
            return _run(client, items, int(threads_per_worker), progress)
    finally:
        if cluster is not None:
            cluster.close()


def _run(client: Client, items: list[Config | sweep.Arm], threads: int, progress: bool) -> list[Path]:
    began = time.perf_counter()
    futures: dict[str, object] = {}   # run key -> its training future (a run two items share is one task)
    configs: dict[str, Config] = {}   # task key -> the run it trains
    arms: dict[str, sweep.Arm] = {}   # task key -> the arm whose draw it chooses
    chosen: dict[int, int] = {}       # id(arm) -> its chosen draw
    pending = as_completed()

    def submit(config: Config) -> None:
        if _key(config) not in futures:
            future = client.submit(_train, config, threads, pure=False, retries=RETRIES,
                                   key=f"train-{config.technique}-{config.seed}-{len(futures)}")
            futures[_key(config)], configs[future.key] = future, config
            pending.add(future)

    for item in items:
        if isinstance(item, Config):
            submit(item)
        elif len(item.draws) == 1:
            for config in item.runs(0):
                submit(config)
        else:
            for config in item.draws:
                submit(config)
            choice = client.submit(_choose, [futures[_key(c)] for c in item.draws], item.draws[0].selection,
                                   pure=False, retries=RETRIES,
                                   key=f"choose-{item.label}-{len(arms)}")
            arms[choice.key] = item
            pending.add(choice)
    done = 0
    for future in pending:
        if future.status != "finished":
            raise LaunchError(_failure(future, configs, arms))
        if future.key in arms:  # an arm's draws are done: its seeds follow from the chosen draw
            arm = arms[future.key]
            chosen[id(arm)] = int(future.result())
            for config in arm.runs(chosen[id(arm)]):
                submit(config)
            continue
        done += 1
        if progress:
            c = configs[future.key]
            print(f"[{done}/{len(futures)} runs, {time.perf_counter() - began:.0f} s] {c.technique} seed {c.seed} "
                  f"held out {c.heldout.key}: {future.result()}", file=sys.stderr, flush=True)
    trained = [c for item in items for c in ([item] if isinstance(item, Config) else
                                             _unique([*item.draws, *item.runs(chosen.get(id(item), 0))]))]
    return [Path(futures[_key(c)].result()) for c in _unique(trained)]


def _unique(configs: list[Config]) -> list[Config]:
    found: dict[str, Config] = {}
    for c in configs:
        found.setdefault(_key(c), c)
    return list(found.values())


def _failure(future, configs: dict[str, Config], arms: dict[str, sweep.Arm]) -> str:
    if future.key in arms:
        what = f"choosing the draw of {arms[future.key].label}"
    else:
        c = configs[future.key]
        what = f"{c.technique} seed {c.seed} held out {c.heldout.key}"
    try:
        future.result()
    except Exception as err:  # the worker's exception, raised again here
        return f"a task failed on the cluster ({what}): {type(err).__name__}: {err}"
    return f"a task did not finish on the cluster ({what}): {future.status}"


def _expand(item: Config | sweep.Arm) -> list[Config]:
    return [item] if isinstance(item, Config) else _unique([*item.draws, *item.runs(0)])


def _key(config: Config) -> str:
    return repr(sorted(config.to_dict().items()))


def _train(config: Config, threads: int) -> str:
    torch.set_num_threads(threads)
    return str(sweep.train(config, progress=False))


def _choose(dirs: list[str], rule: str) -> int:
    return sweep.best_draw([Path(d) for d in dirs], rule)
