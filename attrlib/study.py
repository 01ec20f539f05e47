"""The study runner: execute the numbered notebooks in order with papermill.

Notebooks share results only through files (runs/, figures/, results/), so each one can also be run
alone; the runner only passes the same parameters to all of them and stops at the first failure,
naming the notebook and the cell and keeping the partial executed copy.
"""
from __future__ import annotations

import time
from pathlib import Path

from .errors import ConfigError

# The embedded benchmark each profile studies when no --data is given. `quick` is small enough for the
# test suite; `default` is seed 002's matrix at scale 1/50; `paper` keeps that matrix at a larger size
# (seed 002 resizes to 224; the simulator works at 256 so the resize protocol has something to erase).
STUDY_BENCHMARKS = {
    "quick": dict(out="data/benchmark-quick", scale=1 / 250, size=32),
    "default": dict(out="data/benchmark", scale=1 / 50, size=64),
    "paper": dict(out="data/benchmark-paper", scale=1 / 50, size=256),
}


def resolve_data(profile: str = "default", data: str = "", progress: bool = True) -> Path:
    """The data root a notebook works on: the user's `data`, or the profile's embedded benchmark (made if missing)."""
    if data:
        path = Path(data)
        if not path.exists():
            raise ConfigError(f"data {str(path)!r} does not exist; give a folder <root>/<generator>/<subclass>/... "
                              "or a manifest CSV, or leave data empty for the embedded benchmark")
        return path
    if profile not in STUDY_BENCHMARKS:
        raise ConfigError(f"unknown profile {profile!r}; valid profiles: {', '.join(STUDY_BENCHMARKS)}")
    from .benchmark import synthesize

    spec = dict(STUDY_BENCHMARKS[profile])
    return synthesize(spec.pop("out"), progress=progress, **spec)


def notebooks_in(folder: str | Path) -> list[Path]:
    found = sorted(Path(folder).glob("[0-9][0-9]_*.ipynb"))
    if not found:
        raise ConfigError(f"no numbered notebooks (NN_name.ipynb) in {str(folder)!r}; run from the repository root "
                          "or pass --notebooks DIR")
    return found


def run_study(profile: str = "default", data: str = "", heldout: str = "military_vehicle",
              notebooks: str | Path = "notebooks", out: str | Path = "runs/notebooks", runs: str = "runs",
              figures: str = "figures", results: str = "results", device: str = "auto",
              only: tuple[str, ...] = (), progress: bool = True) -> list[Path]:
    """Execute every numbered notebook (or those whose name starts with one of `only`) and return the executed copies."""
    import papermill as pm

    from .config import PROFILES

    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; valid profiles: {', '.join(PROFILES)}")
    data_root = str(resolve_data(profile, data, progress=progress))  # made once here, not by every notebook
    params = dict(profile=profile, data=data_root, heldout=heldout, runs=runs, figures=figures,
                  results=results, device=device)
    todo = [nb for nb in notebooks_in(notebooks) if not only or nb.name.startswith(tuple(only))]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    done = []
    for i, nb in enumerate(todo, 1):
        target = out / nb.name
        start = time.perf_counter()
        print(f"[{i}/{len(todo)}] {nb.name} ...", flush=True)
        try:
            pm.execute_notebook(str(nb), str(target), parameters=params, kernel_name="python3",
                                progress_bar=progress, cwd=str(Path.cwd()))
        except pm.PapermillExecutionError as err:
            raise StudyError(f"notebook {nb.name} failed in cell {err.cell_index} (execution count {err.exec_count}): "
                             f"{err.ename}: {err.evalue}\nthe partial executed notebook is kept at {target}") from None
        print(f"[{i}/{len(todo)}] {nb.name} done in {time.perf_counter() - start:.0f} s -> {target}", flush=True)
        done.append(target)
    return done


class StudyError(RuntimeError):
    """A notebook of the study failed; the message names it, the cell, and the partial copy."""
