"""The study runner: execute the numbered notebooks with papermill, in numeric order, two at a time on a
multi-core machine.

Notebooks share results only through files (runs/, figures/, results/), so each one can also be run
alone; the runner only passes the same parameters to all of them and stops at the first failure,
naming the notebook and the cell and keeping the partial executed copy. Each notebook runs on the kernel
its metadata names (the project's `attrlib` kernel), and the study's record (`study_timing.json`: profile,
data, commit, times) is what `attrlib.study.report` puts at the top of the HTML report. Beside the results,
`provenance.json` (`attrlib.provenance`) names the commit, profile, data, seeds, rotations and parameters of
the study that produced each notebook's results; the README's generated section quotes it.
"""
from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Iterable

from .. import techniques
from ..config import PROFILES
from ..errors import ConfigError
from ..reporting.explorer import HEADLESS_ENV
from ..io import atomic_write_json
from ..notebook import execute, notebook_kernel, shutdown_kernels
from ..provenance import git_commit, now, study_record, write_provenance
from ..rotation import rotations_text
from .session import project_path, resolve_data, resolve_rotations

__all__ = ["run_study", "StudyError", "lanes", "notebook_kernel", "notebooks_in"]  # notebook_kernel: attrlib.study gives it


def finished_runs(runs: str | os.PathLike) -> int:
    """Finished run folders under `runs` that trained or fitted something: an assembled technique's (the ensemble,
    an average of other runs) is not counted."""
    assembled = {name for name, cls in techniques.REGISTRY.items() if cls.assembled}
    return sum(1 for done in Path(runs).glob("*/*/done") if done.parent.parent.name not in assembled)


def notebooks_in(folder: str | Path) -> list[Path]:
    found = sorted(Path(folder).glob("[0-9][0-9]_*.ipynb"))
    if not found:
        raise ConfigError(f"no numbered notebooks (NN_name.ipynb) in {str(folder)!r}; run from the repository root "
                          "or pass --notebooks DIR")
    return found


def chosen_notebooks(folder: str | Path, prefixes: Iterable[str] = ()) -> list[Path]:
    """The numbered notebooks of `folder` whose name starts with one of `prefixes` (empty: all)."""
    prefixes = tuple(prefixes)
    return [nb for nb in notebooks_in(folder) if not prefixes or nb.name.startswith(prefixes)]


def lanes(jobs: int = 0, threads: int = 0, cores: int | None = None) -> tuple[int, int]:
    """(notebooks at a time, torch threads in each) for `run_study`'s jobs and threads (0: automatic): 2 cores give
    2 notebooks of 1 thread, 8 cores 4 notebooks of 2 threads; one job keeps torch's default (0) unless told."""
    if int(jobs) < 0 or int(threads) < 0:
        raise ConfigError(f"jobs ({jobs}) and threads ({threads}) must be 0 (automatic) or more")
    cores = cores or os.cpu_count() or 1
    jobs = int(jobs) or min(4, cores)
    if jobs > 1 and not threads:
        threads = max(1, cores // jobs)
    return jobs, int(threads)


def run_study(profile: str = "default", data: str = "", heldout: str | Iterable[str] = "",
              seeds: Iterable[int] = (), notebooks: str | Path = "notebooks", out: str | Path = "runs/notebooks", runs: str = "runs",
              figures: str = "figures", results: str = "results", device: str = "auto",
              only: tuple[str, ...] = (), progress: bool = True, threads: int = 0, jobs: int = 0,
              on_bad: str = "raise", fresh_kernels: bool = False) -> list[Path]:
    """Execute every numbered notebook (or those whose name starts with one of `only`) and return the executed copies.

    Prints one line per notebook before and after it (with its time); a finished run folder is reused by
    every notebook (the engine's run ids), so a second study, or one stopped and started again, trains only
    what is missing. On a failure: StudyError naming the notebook and the cell; the partial executed copy
    is kept under `out` and no later notebook starts.

    jobs: notebooks executed at once (0: the CPU cores, at most 4). They start in
    numeric order; a run two of them need is trained once (the engine locks a run while it trains it, the
    other waits and reuses it), and they share nothing else but files, so any order gives the same results.
    threads: torch CPU threads in every notebook (0: the cores divided by jobs, or torch's default for one job).
    seeds: the training seeds of every notebook (empty: the profile's); a smaller protocol than the profile's is
    recorded as such (provenance.json's seeds, study_timing.json).
    fresh_kernels: each notebook on a kernel of its own, as JupyterLab runs them; by default a lane executes its
    notebooks one after the other on one kernel, reset between them (`attrlib.notebook`: the imports are kept,
    about 9 CPU s per notebook, and nothing else).
    """
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; valid profiles: {', '.join(PROFILES)}")
    jobs, threads = lanes(jobs, threads)
    # relative folders are the project root's (as in every notebook's session), wherever this is started
    runs, figures, results, notebooks, out = (str(project_path(p)) for p in (runs, figures, results, notebooks, out))
    began, started = time.perf_counter(), now()
    finished_before = finished_runs(runs)  # 0: a cold study, every run trained here
    # made once here, not by every notebook; on the embedded benchmark also the oracles' twins (unbiased and
    # instance-matched, which notebooks 01 and 10 read), before notebooks run side by side, `jobs` at a time
    variants = ("biased",) if data else ("biased", "unbiased", "matched")
    if jobs > 1 and len(variants) > 1:
        with ProcessPoolExecutor(max_workers=min(jobs, len(variants)),
                                 mp_context=multiprocessing.get_context("spawn")) as pool:
            made = list(pool.map(resolve_data, [profile] * len(variants), [data] * len(variants),
                                 [False] * len(variants), variants))
    else:
        made = [resolve_data(profile, data, progress=progress, variant=v) for v in variants]
    data_root = str(made[0])
    # the rotations, resolved once (the profile's when none are given), passed to every notebook and recorded
    rotations = resolve_rotations(profile, data_root, heldout)
    seeds = tuple(int(x) for x in seeds)
    params = dict(profile=profile, data=data_root, heldout=rotations_text(rotations),
                  runs=runs, figures=figures,
                  results=results, device=device, threads=int(threads), on_bad=on_bad,
                  **({"seeds": list(seeds)} if seeds else {}))
    only = tuple(only) or tuple(PROFILES[profile].get("notebooks", ()))  # the profile's notebooks (claims: 11)
    todo = chosen_notebooks(notebooks, only)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = min(jobs, len(todo))
    headless = os.environ.get(HEADLESS_ENV)
    os.environ[HEADLESS_ENV] = "1"  # the kernels inherit it: notebook 08's explorer draws a figure, not widgets
    # provenance: the notebooks about to run are this study's from now on (a failed or stopped study leaves
    # its record "running"/"failed", never an older study's claim on results it may have overwritten)
    record = dict(commit=git_commit(), profile=profile, data=data_root, rotations=rotations,
                  seeds=list(seeds) or list(PROFILES[profile]["seeds"]),
                  parameters=params, settings=PROFILES[profile], notebooks=[nb.name for nb in todo], started=started)
    write_provenance(results, study_record(**record))
    try:
        timings = _execute_all(todo, out, params, jobs, progress, fresh_kernels)
    except BaseException:
        write_provenance(results, study_record(**record, finished=now(), status="failed"))
        raise
    finally:
        if headless is None:
            os.environ.pop(HEADLESS_ENV, None)
        else:
            os.environ[HEADLESS_ENV] = headless
    total = time.perf_counter() - began
    finished = now()
    provenance = write_provenance(results, study_record(**record, finished=finished, status="finished"))
    # a record of this study's wall time (benchmarks/bench_study.py reports the last default one)
    atomic_write_json(out / "study_timing.json", dict(
        profile=profile, data=data_root, heldout=params["heldout"], seeds=record["seeds"], device=device,
        commit=record["commit"],
        runs=str(runs), figures=str(figures), results=str(results), only=list(only), runs_reused_or_before=finished_before,
        runs_trained=finished_runs(runs) - finished_before, jobs=jobs, threads=int(threads),
        fresh_kernels=bool(fresh_kernels),
        cores=os.cpu_count() or 1, seconds=round(total, 1),
        notebooks={k: round(v, 1) for k, v in timings.items()}, started=started, finished=finished,
        provenance=str(provenance)))
    print(f"study ({profile}): {len(todo)} notebooks in {total / 60:.1f} min", flush=True)
    return [out / nb.name for nb in todo]


def _execute_all(todo: list[Path], out: Path, params: dict, jobs: int, progress: bool,
                 fresh: bool = False) -> dict[str, float]:
    """Run the notebooks, one at a time in this process or `jobs` at a time: seconds per notebook."""
    if jobs > 1:
        return _run_parallel(todo, out, params, jobs, fresh)  # each lane's kept kernel ends with its worker
    timings = {}
    try:
        for i, nb in enumerate(todo, 1):
            target = out / nb.name
            print(f"[{i}/{len(todo)}] {nb.name} ...", flush=True)
            seconds, error = execute(str(nb), str(target), params, str(Path.cwd()), fresh=fresh, progress=progress)
            if error is not None:
                raise StudyError(error)
            timings[nb.name] = seconds
            print(f"[{i}/{len(todo)}] {nb.name} done in {timings[nb.name]:.0f} s -> {target}", flush=True)
    finally:
        shutdown_kernels()  # the study's kernel ends with it: the next study (its threads, say) starts afresh
    return timings


def _run_parallel(todo: list[Path], out: Path, params: dict, jobs: int, fresh: bool = False) -> dict[str, float]:
    """`jobs` notebooks at once, started in numeric order; the first failure stops new starts (the ones
    running finish, so their runs are kept) and is raised as StudyError."""
    print(f"{len(todo)} notebooks, {jobs} at a time, {params['threads']} torch thread(s) each", flush=True)
    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: no torch threads inherited from a fork
    failure, finished, timings = None, 0, {}
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        queue, running = list(todo), {}
        while queue or running:
            while queue and len(running) < jobs and failure is None:
                nb = queue.pop(0)
                print(f"[start] {nb.name}", flush=True)
                running[pool.submit(execute, str(nb), str(out / nb.name), params, str(Path.cwd()), fresh)] = nb
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
