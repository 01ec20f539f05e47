"""The study runner: execute the numbered notebooks with papermill, in numeric order, two at a time on a
multi-core machine.

Notebooks share results only through files (runs/, figures/, results/), so each one can also be run
alone; the runner only passes the same parameters to all of them and stops at the first failure,
naming the notebook and the cell and keeping the partial executed copy.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .io import atomic_write_json

# Set for the kernels a study runs: notebooks draw static figures instead of live widgets there (nbclient can
# wait forever on a cell whose output widget it captures: jupyter/nbclient#312, nteract/papermill#723).
HEADLESS_ENV = "ATTRLIB_HEADLESS"

# The embedded benchmark each profile studies when no --data is given. `quick` is small enough for the
# test suite; `default` is seed 002's matrix at scale 1/50; `paper` keeps that matrix at a larger size
# (seed 002 resizes to 224; the simulator works at 256 so the resize protocol has something to erase).
STUDY_BENCHMARKS = {
    "quick": dict(out="data/benchmark-quick", scale=1 / 250, size=32),
    "default": dict(out="data/benchmark", scale=1 / 50, size=64),
    "paper": dict(out="data/benchmark-paper", scale=1 / 50, size=256),
}


def resolve_data(profile: str = "default", data: str = "", progress: bool = True,
                 variant: str = "biased") -> Path | None:
    """The data root a notebook works on: the user's `data`, or the profile's embedded benchmark (made if missing).

    variant="unbiased": the same benchmark with the same total spread over every generator x subclass cell,
    in `<out>-unbiased` (the oracle's training set: the baseline trained there is the reference of "gap
    closed"). The user's own data has no unbiased variant: None.
    """
    if variant not in ("biased", "unbiased"):
        raise ConfigError(f"unknown variant {variant!r}; valid variants: biased, unbiased")
    if data:
        path = Path(data)
        if not path.exists():
            raise ConfigError(f"data {str(path)!r} does not exist; give a folder <root>/<generator>/<subclass>/... "
                              "or a manifest CSV, or leave data empty for the embedded benchmark")
        if variant == "unbiased":
            return unbiased_variant(path)
        return path
    if profile not in STUDY_BENCHMARKS:
        raise ConfigError(f"unknown profile {profile!r}; valid profiles: {', '.join(STUDY_BENCHMARKS)}")
    from .benchmark import synthesize

    spec = dict(STUDY_BENCHMARKS[profile])
    out = spec.pop("out") + ("-unbiased" if variant == "unbiased" else "")
    return synthesize(out, progress=progress, variant=variant, **spec)


def unbiased_variant(root: str | Path) -> Path | None:
    """The unbiased twin of an embedded benchmark folder (`<root>-unbiased`, made with the same parameters
    if missing), or None for data that is not the embedded benchmark (a user's own images)."""
    import json

    root = Path(root)
    if not is_simulated(root):
        return None
    params = json.loads((root / "benchmark.json").read_text(encoding="utf-8"))
    if params.get("variant") == "unbiased":
        return root
    from inspect import signature

    from .benchmark import synthesize

    keys = set(signature(synthesize).parameters) - {"out", "variant", "force", "progress"}
    return synthesize(root.parent / f"{root.name}-unbiased", variant="unbiased", progress=False,
                      **{k: v for k, v in params.items() if k in keys})


def is_simulated(root: str | Path) -> bool:
    """True when `root` is the embedded benchmark (it carries the simulator's benchmark.json)."""
    return (Path(root) / "benchmark.json").is_file()


def benchmark_spec(profile: str, root: str | Path, **execution) -> dict:
    """Keyword arguments for `attrlib.benchmark.checks` trainings that match a profile and an embedded benchmark.

    The benchmark's own scale, size and seed come from its benchmark.json (so checks run at the size the
    study runs at); the training options are the profile's; `execution` adds runs/device.
    """
    import json

    from .config import PROFILES

    if not is_simulated(root):
        raise ConfigError(f"{str(root)!r} is not the embedded benchmark (no benchmark.json): the simulation "
                          "checks need the strength knob, which real data does not have")
    params = json.loads((Path(root) / "benchmark.json").read_text(encoding="utf-8"))
    # the study's benchmark and its unbiased twin are the sweep's points at the default strength: reused, not
    # made again (and their runs are the baseline's and the oracle's seed 0: reused as well)
    reuse = [str(p) for p in (Path(root), unbiased_variant(Path(root))) if p is not None and p.is_dir()]
    return dict(scale=params["scale"], size=params["size"], instance_spread=params.get("instance_spread", 0.0),
                technique="baseline", reuse=reuse,
                data_dir=str(Path(root).parent / "checks"), **PROFILES[profile]["config"], **execution)


def notebooks_in(folder: str | Path) -> list[Path]:
    found = sorted(Path(folder).glob("[0-9][0-9]_*.ipynb"))
    if not found:
        raise ConfigError(f"no numbered notebooks (NN_name.ipynb) in {str(folder)!r}; run from the repository root "
                          "or pass --notebooks DIR")
    return found


def run_study(profile: str = "default", data: str = "", heldout: str = "military_vehicle",
              notebooks: str | Path = "notebooks", out: str | Path = "runs/notebooks", runs: str = "runs",
              figures: str = "figures", results: str = "results", device: str = "auto",
              only: tuple[str, ...] = (), progress: bool = True, threads: int = 0, jobs: int = 0) -> list[Path]:
    """Execute every numbered notebook (or those whose name starts with one of `only`) and return the executed copies.

    Prints one line per notebook before and after it (with its time); a finished run folder is reused by
    every notebook (the engine's run ids), so a second study, or one stopped and started again, trains only
    what is missing. On a failure: StudyError naming the notebook and the cell; the partial executed copy
    is kept under `out` and no later notebook starts.

    jobs: notebooks executed at once (0: the CPU cores, at most 4). They start in
    numeric order; a run two of them need is trained once (the engine locks a run while it trains it, the
    other waits and reuses it), and they share nothing else but files, so any order gives the same results.
    threads: torch CPU threads in every notebook (0: the cores divided by jobs, or torch's default for one job).
    """
    from .config import PROFILES

    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; valid profiles: {', '.join(PROFILES)}")
    if int(jobs) < 0 or int(threads) < 0:
        raise ConfigError(f"jobs ({jobs}) and threads ({threads}) must be 0 (automatic) or more")
    cores = os.cpu_count() or 1
    jobs = int(jobs) or min(4, cores)  # 2 cores: 2 notebooks of 1 thread; 8 cores: 4 notebooks of 2 threads
    if jobs > 1 and not threads:
        threads = max(1, cores // jobs)
    began = time.perf_counter()
    finished_before = len(list(Path(runs).glob("*/*/done")))  # 0: a cold study, every run trained here
    data_root = str(resolve_data(profile, data, progress=progress))  # made once here, not by every notebook
    if not data:  # the oracle's unbiased twin too (notebooks 01 and 10 read it), before notebooks run side by side
        resolve_data(profile, data, progress=progress, variant="unbiased")
    params = dict(profile=profile, data=data_root, heldout=heldout, runs=runs, figures=figures,
                  results=results, device=device, threads=int(threads))
    todo = [nb for nb in notebooks_in(notebooks) if not only or nb.name.startswith(tuple(only))]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = min(jobs, len(todo))
    headless = os.environ.get(HEADLESS_ENV)
    os.environ[HEADLESS_ENV] = "1"  # the kernels inherit it: notebook 08's explorer draws a figure, not widgets
    try:
        timings = _execute_all(todo, out, params, jobs, progress)
    finally:
        if headless is None:
            os.environ.pop(HEADLESS_ENV, None)
        else:
            os.environ[HEADLESS_ENV] = headless
    total = time.perf_counter() - began
    # a record of this study's wall time (benchmarks/bench_study.py reports the last default one)
    atomic_write_json(out / "study_timing.json", dict(
        profile=profile, data=data_root, runs=str(runs), only=list(only), runs_reused_or_before=finished_before,
        runs_trained=len(list(Path(runs).glob("*/*/done"))) - finished_before, jobs=jobs, threads=int(threads),
        cores=cores, seconds=round(total, 1),
        notebooks={k: round(v, 1) for k, v in timings.items()}, finished=time.strftime("%Y-%m-%dT%H:%M:%S%z")))
    print(f"study ({profile}): {len(todo)} notebooks in {total / 60:.1f} min", flush=True)
    return [out / nb.name for nb in todo]


def _execute_all(todo: list[Path], out: Path, params: dict, jobs: int, progress: bool) -> dict[str, float]:
    """Run the notebooks, one at a time in this process or `jobs` at a time: seconds per notebook."""
    if jobs > 1:
        return _run_parallel(todo, out, params, jobs)
    import papermill as pm

    timings = {}
    for i, nb in enumerate(todo, 1):
        target = out / nb.name
        start = time.perf_counter()
        print(f"[{i}/{len(todo)}] {nb.name} ...", flush=True)
        try:
            pm.execute_notebook(str(nb), str(target), parameters=params, kernel_name="python3",
                                progress_bar=progress, cwd=str(Path.cwd()))
        except pm.PapermillExecutionError as err:
            raise StudyError(_failure(nb.name, target, err.cell_index, err.exec_count,
                                      f"{err.ename}: {err.evalue}")) from None
        timings[nb.name] = time.perf_counter() - start
        print(f"[{i}/{len(todo)}] {nb.name} done in {timings[nb.name]:.0f} s -> {target}", flush=True)
    return timings


def _failure(name: str, target: Path, cell: Any, count: Any, what: str) -> str:
    return (f"notebook {name} failed in cell {cell} (execution count {count}): {what}\n"
            f"the partial executed notebook is kept at {target}")


def _execute(nb: str, target: str, params: dict, cwd: str) -> tuple[float, str | None]:
    """One notebook in a worker process: (seconds, None) or (seconds, the failure message)."""
    import papermill as pm

    start = time.perf_counter()
    try:
        pm.execute_notebook(nb, target, parameters=params, kernel_name="python3", progress_bar=False, cwd=cwd)
    except pm.PapermillExecutionError as err:
        return time.perf_counter() - start, _failure(Path(nb).name, Path(target), err.cell_index, err.exec_count,
                                                     f"{err.ename}: {err.evalue}")
    except Exception as err:  # a kernel that died, a notebook that cannot be read: still name the notebook
        return time.perf_counter() - start, (f"notebook {Path(nb).name} could not be executed: "
                                             f"{type(err).__name__}: {err}\nthe partial executed notebook (if any) is "
                                             f"kept at {target}")
    return time.perf_counter() - start, None


def _run_parallel(todo: list[Path], out: Path, params: dict, jobs: int) -> dict[str, float]:
    """`jobs` notebooks at once, started in numeric order; the first failure stops new starts (the ones
    running finish, so their runs are kept) and is raised as StudyError."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    print(f"{len(todo)} notebooks, {jobs} at a time, {params['threads']} torch thread(s) each", flush=True)
    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: no torch threads inherited from a fork
    failure, finished, timings = None, 0, {}
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        queue, running = list(todo), {}
        while queue or running:
            while queue and len(running) < jobs and failure is None:
                nb = queue.pop(0)
                print(f"[start] {nb.name}", flush=True)
                running[pool.submit(_execute, str(nb), str(out / nb.name), params, str(Path.cwd()))] = nb
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                nb = running.pop(future)
                seconds, error = future.result()
                finished += 1
                if error is None:
                    timings[nb.name] = seconds
                    print(f"[{finished}/{len(todo)}] {nb.name} done in {seconds:.0f} s -> {out / nb.name}", flush=True)
                elif failure is None:
                    failure = error
                    print(f"[failed] {nb.name} after {seconds:.0f} s; no further notebook starts"
                          + (f", waiting for {len(running)} running" if running else ""), flush=True)
    if failure is not None:
        raise StudyError(failure)
    return timings


class StudyError(RuntimeError):
    """A notebook of the study failed; the message names it, the cell, and the partial copy."""
