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
    return dict(scale=params["scale"], size=params["size"], instance_spread=params.get("instance_spread", 0.0),
                technique="baseline",
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
              only: tuple[str, ...] = (), progress: bool = True, threads: int = 0) -> list[Path]:
    """Execute every numbered notebook (or those whose name starts with one of `only`) and return the executed copies.

    Prints one line per notebook before and after it (with its time); a finished run folder is reused by
    every notebook (the engine's run ids), so a second study, or one stopped and started again, trains only
    what is missing. On a failure: StudyError naming the notebook and the cell; the partial executed copy
    is kept under `out` and no later notebook runs. threads: torch CPU threads in every notebook (0: torch's
    default).
    """
    import papermill as pm

    from .config import PROFILES

    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; valid profiles: {', '.join(PROFILES)}")
    data_root = str(resolve_data(profile, data, progress=progress))  # made once here, not by every notebook
    params = dict(profile=profile, data=data_root, heldout=heldout, runs=runs, figures=figures,
                  results=results, device=device, threads=int(threads))
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
