"""The claims profile on a real folder, on a lent GPU machine that has torch but no Dask, papermill or Jupyter
(how results_realdev/ was made: docs/cost.md). Where Dask and Jupyter are installed, use `attrlib launch --device
cuda --workers N` and `attrlib study` instead: this is their work without them, for a machine that cannot install.

    python3 benchmarks/device/gpu_claims.py   (env: PROFILE, DATA, HELDOUT, SEEDS, LIMIT seconds, EVAL_RESERVE,
                                               WORKERS, OUT, DEVICE, EVAL_THREADS; STEPS: a local rehearsal's
                                               budget)

The machine copies the repository with the data folder beside it (../shared/realdev/images) and the captum wheel
in benchmarks/device/wheels/ (pure Python; `pip download --no-deps captum`); stubs/ stands in for the modules the
machine lacks and this never calls (IPython's display prints; papermill, Jupyter, Dask and the EfficientNet wheel
are imported by attrlib modules at import time only). Git's HEAD there (a bundle fetched into the copy) gives the
runs and provenance.json their commit.

1. train: every run `attrlib launch` would train for the study (attrlib.study.jobs.study_jobs; a cross-fitted
   reference's fold runs as tasks of their own), seed by seed, in a pool of WORKERS spawned processes, each run by
   `sweep.train` (the engine: its locks, run ids and atomic writes); EVAL_RESERVE seconds before LIMIT nothing new
   starts, and 60 s later the runs still going are stopped (their seed is not evaluated);
2. evaluate: `attrlib.study.runner.run_study` on the seeds whose runs all finished, its notebooks executed in this
   process (`execute` below: each code cell in turn, the parameters injected after the cell tagged `parameters`,
   as papermill does) instead of on a Jupyter kernel; provenance.json and study_timing.json are the runner's own;
3. pack into $OUT: the results and figures, the run folders without their checkpoints, the log.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import time
import traceback
from pathlib import Path

T0 = time.time()
ROOT = Path(__file__).resolve().parents[2]
DEV = Path(__file__).resolve().parent
PATHS = [str(DEV / "stubs"), *map(str, sorted((DEV / "wheels").glob("*.whl"))), str(ROOT)]
sys.path[:0] = PATHS
os.environ["PYTHONPATH"] = os.pathsep.join([*PATHS, os.environ.get("PYTHONPATH", "")])
os.environ.setdefault("MPLBACKEND", "Agg")
PROFILE = os.environ.get("PROFILE", "claims")
DATA = os.environ.get("DATA", "../shared/realdev/images")
LIMIT = float(os.environ.get("LIMIT", "540"))
WORKERS = int(os.environ.get("WORKERS", "14"))
DEVICE = os.environ.get("DEVICE", "cuda")
HELDOUT = os.environ.get("HELDOUT", "")  # empty: the profile's rotations
SEEDS = tuple(int(x) for x in os.environ.get("SEEDS", "").split(",") if x)  # empty: the profile's
STEPS = int(os.environ.get("STEPS", "0"))  # a local rehearsal's budget (0: the profile's)
ONLY = tuple(n for n in os.environ.get("ONLY", "").split(",") if n)  # empty: the profile's notebooks
OUT = Path(os.environ.get("OUT") or ROOT / "runs" / "device_out")  # what comes back (the device sets $OUT)
EVAL_RESERVE = float(os.environ.get("EVAL_RESERVE", "220"))  # seconds kept for the evaluation and the packing
# torch CPU threads of the evaluation (the robustness table predicts on the CPU: with 4 threads it did not finish on
# realdev in call 2); default: every core
EVAL_THREADS = int(os.environ.get("EVAL_THREADS", "0")) or os.cpu_count() or 4
RESULTS, FIGURES, EXECUTED = "results_real", "figures_real", "runs/notebooks_real"


def say(*what) -> None:
    line = f"[{time.time() - T0:6.1f} s] " + " ".join(str(w) for w in what)
    print(line, flush=True)
    with open(OUT / "log.txt", "a") as f:
        f.write(line + "\n")


def _rehearsal() -> None:
    if STEPS:
        from attrlib.config import PROFILES
        PROFILES[PROFILE]["config"]["steps"] = STEPS


def _init() -> None:
    import torch
    torch.set_num_threads(1)
    _rehearsal()


def _train(config) -> tuple[str, float]:
    from attrlib import sweep
    began = time.time()
    return str(sweep.train(config, progress=False)), time.time() - began


def plan():
    """[(seed, order, Config)]: every run of the study, a cross-fitted reference's folds apart, seed by seed."""
    _rehearsal()
    from attrlib import techniques
    from attrlib.launch import _expand
    from attrlib.study.jobs import study_jobs
    configs = {}
    for arm in study_jobs(PROFILE, DATA, heldout=HELDOUT, seeds=SEEDS, device=DEVICE):
        for c in _expand(arm):
            cls = techniques.get(c.technique)
            own = {**cls.defaults, **c.technique_params}
            if cls.cross_fit and own["fold"] < 0:  # the folds: tasks of their own; assembling is left to the study
                for i in range(int(own["folds"])):
                    f = c.replace(technique_params={**c.technique_params, "fold": i})
                    configs.setdefault(repr(sorted(f.to_dict().items())), (c.seed, 2, f))
            else:
                order = 0 if c.technique == "baseline" else 1  # the ERM runs first: other arms' upstreams
                configs.setdefault(repr(sorted(c.to_dict().items())), (c.seed, order, c))
    return sorted(configs.values(), key=lambda t: (t[0], t[1]))


def train(tasks) -> set[int]:
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    deadline = T0 + LIMIT - EVAL_RESERVE
    seeds = sorted({s for s, _, _ in tasks})
    say(f"{len(tasks)} runs to train, seeds {seeds}, {WORKERS} workers, new starts until {deadline - T0:.0f} s")
    failed: dict[int, int] = {}
    done: dict[int, int] = {}
    durations = []
    pool = ProcessPoolExecutor(WORKERS, mp_context=multiprocessing.get_context("spawn"), initializer=_init)
    futures, pending = {}, set()
    try:
        futures = {pool.submit(_train, c): (s, c) for s, _, c in tasks}
        pending = set(futures)
        while pending and time.time() < deadline + 60:
            finished, pending = wait(pending, timeout=5, return_when=FIRST_COMPLETED)
            for fut in finished:
                s, c = futures[fut]
                if fut.cancelled():
                    continue
                try:
                    _, seconds = fut.result()
                    durations.append(seconds)
                    done[s] = done.get(s, 0) + 1
                except Exception as err:  # a run that fails is named; its seed is not evaluated
                    failed[s] = failed.get(s, 0) + 1
                    say(f"FAILED {c.technique} seed {c.seed} {c.heldout.key}: {type(err).__name__}: {err}")
            if time.time() > deadline:
                cancelled = sum(f.cancel() for f in pending)
                if cancelled:
                    say(f"deadline: {cancelled} runs not started")
                pending = {f for f in pending if not f.cancelled()}
            total = sum(done.values())
            if finished and total % 20 == 0:
                say(f"{total} runs done: {dict(sorted(done.items()))}, median {sorted(durations)[len(durations) // 2]:.1f} s a run")
        if pending:  # what finished since the last look counts; the rest is stopped (its seed is not evaluated)
            finished, pending = wait(pending, timeout=0)
            for fut in finished:
                s, c = futures[fut]
                if not fut.cancelled() and fut.exception() is None:
                    done[s] = done.get(s, 0) + 1
            if pending:
                say(f"hard stop: {len(pending)} runs still going are stopped (their folders stay unfinished, "
                    "their lock files behind: a later run of the same config waits for none and trains again)")
    finally:
        for process in list(getattr(pool, "_processes", {}).values()):
            if pending:
                process.terminate()
        pool.shutdown(wait=not pending, cancel_futures=True)
    per_seed = {s: sum(1 for t in tasks if t[0] == s) for s in seeds}
    complete = {s for s in seeds if done.get(s, 0) == per_seed[s] and not failed.get(s)}
    say(f"trained: {dict(sorted(done.items()))} of {per_seed}; failed {failed}; complete seeds {sorted(complete)}; "
        f"run seconds median {sorted(durations)[len(durations) // 2] if durations else 0:.1f}, total {sum(durations):.0f}")
    return complete


def execute(path, target, params, cwd, fresh=False, progress=False):
    """attrlib.notebook.execute's contract (seconds, error or None), in this process: the notebook's code cells in
    one namespace, its parameters injected after the cell tagged `parameters`."""
    nb = json.loads(Path(path).read_text())
    if not any("parameters" in c.get("metadata", {}).get("tags", []) for c in nb["cells"]):
        return 0.0, f"notebook {Path(path).name} has no cell tagged `parameters`: its parameters cannot be injected"
    namespace = {"__name__": "__main__"}
    began = time.perf_counter()
    before = os.getcwd()
    os.chdir(cwd)
    try:
        return _cells(nb, path, target, params, namespace, began)
    finally:
        os.chdir(before)


def _cells(nb, path, target, params, namespace, began):
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        try:
            exec(compile("".join(cell["source"]), f"{Path(path).name} cell {i}", "exec"), namespace)
            if "parameters" in cell.get("metadata", {}).get("tags", []):
                exec(compile("\n".join(f"{k} = {v!r}" for k, v in params.items()), "injected-parameters", "exec"),
                     namespace)
        except Exception:
            return time.perf_counter() - began, f"notebook {Path(path).name} failed in cell {i}:\n{traceback.format_exc()}"
        say(f"{Path(path).name} cell {i} done")
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    Path(target).write_text(json.dumps(nb))  # the source notebook (no outputs: they went to this process's stdout)
    return time.perf_counter() - began, None


def evaluate(seeds: list[int]) -> None:
    _rehearsal()
    from attrlib.study import runner
    runner.execute = execute
    runner.shutdown_kernels = lambda: None
    runner.run_study(profile=PROFILE, data=DATA, heldout=HELDOUT, seeds=seeds, device=DEVICE, jobs=1, threads=EVAL_THREADS,
                     results=RESULTS, figures=FIGURES, out=EXECUTED, progress=False, only=ONLY)


def pack() -> None:
    def add(name, folder, keep=lambda p: True):
        with tarfile.open(OUT / name, "w:gz") as tar:
            for p in sorted(Path(folder).rglob("*")):
                if p.is_file() and keep(p):
                    tar.add(p, arcname=str(p.relative_to(ROOT)))
    add("results.tar.gz", ROOT / RESULTS)
    add("figures.tar.gz", ROOT / FIGURES, lambda p: p.suffix == ".png")
    import zlib
    for part in range(3):  # a file that comes back holds at most 16 MiB: the run folders in three parts
        add(f"runs{part}.tar.gz", ROOT / "runs", lambda p: p.name != "checkpoint.pt" and ".lock" not in p.name
            and zlib.crc32(str(p.parent.relative_to(ROOT)).encode()) % 3 == part)
    say("packed:", {p.name: p.stat().st_size for p in OUT.iterdir()})


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    if len(sys.argv) > 1 and sys.argv[1] == "evaluate":
        evaluate([int(s) for s in sys.argv[2].split(",")])
        return 0
    import torch
    say(f"torch {torch.__version__}, cuda {torch.cuda.is_available()}, "
        f"{torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'}, {os.cpu_count()} cores, "
        f"profile {PROFILE}, data {DATA}, limit {LIMIT:.0f} s")
    try:
        tasks = plan()
        complete = train(tasks)
        if complete:
            left = LIMIT - (time.time() - T0) - 45
            say(f"evaluating seeds {sorted(complete)} ({left:.0f} s left for it)")
            try:
                with open(OUT / "evaluate.txt", "w") as log:
                    r = subprocess.run([sys.executable, __file__, "evaluate", ",".join(map(str, sorted(complete)))],
                                       timeout=max(30, left), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
                say(f"evaluation exit {r.returncode}")
            except subprocess.TimeoutExpired:
                say("evaluation stopped at its time limit")
    except Exception:
        say("FAILED:\n" + traceback.format_exc())
    finally:
        for folder in (RESULTS, FIGURES, "runs"):
            (ROOT / folder).mkdir(exist_ok=True)
        pack()
    return 0


if __name__ == "__main__":
    sys.exit(main())
