"""One notebook executed with papermill on its kernel: the study runner's unit of work (`attrlib.study.runner`).

It imports papermill, nbformat and jupyter_client and nothing of attrlib. A parallel study runs each notebook
from a fresh worker interpreter (spawn) that imports this module alone: importing the runner, in the `study`
package, would load torch, torchvision and the data layer there (`attrlib.study` gives the notebooks their
session), about 12 CPU s per worker for a process that only drives papermill (benchmarks/bench_study_overheads.py).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterable

import nbformat
import papermill as pm
from jupyter_client.kernelspec import KernelSpecManager

# The kernel the notebooks are written for (their kernelspec metadata), installed by `make install` into the
# venv; a study falls back to python3 only when it is missing.
PROJECT_KERNEL = "attrlib"
FALLBACK_KERNEL = "python3"


def notebook_kernel(notebook: str | Path, installed: Iterable[str] | None = None) -> str:
    """The kernel to execute `notebook` on: the one its metadata names (for the numbered notebooks, the
    project's `attrlib` kernel) when that kernelspec is installed; otherwise python3, saying so."""
    meta = nbformat.read(str(notebook), as_version=4).metadata.get("kernelspec", {})
    name = meta.get("name") or FALLBACK_KERNEL
    installed = set(KernelSpecManager().find_kernel_specs() if installed is None else installed)
    if name in installed:
        return name
    print(f"{Path(notebook).name}: its kernel {name!r} is not installed here; running it on {FALLBACK_KERNEL!r} "
          f"instead. Install the project's kernel with `make install` (or: python -m ipykernel install "
          f"--sys-prefix --name {PROJECT_KERNEL} --display-name \"attrlib (.venv)\").", flush=True)
    return FALLBACK_KERNEL


def failure(name: str, target: Path, cell: Any, count: Any, what: str) -> str:
    """The message of a failed notebook: its name, the cell, the error and where its partial copy is."""
    return (f"notebook {name} failed in cell {cell} (execution count {count}): {what}\n"
            f"the partial executed notebook is kept at {target}")


def execute(nb: str, target: str, params: dict, cwd: str) -> tuple[float, str | None]:
    """Execute notebook `nb` into `target` with `params` in `cwd`: (seconds, None) or (seconds, the failure
    message naming the notebook and the cell)."""
    start = time.perf_counter()
    try:
        pm.execute_notebook(nb, target, parameters=params, kernel_name=notebook_kernel(nb), progress_bar=False,
                            cwd=cwd)
    except pm.PapermillExecutionError as err:
        return time.perf_counter() - start, failure(Path(nb).name, Path(target), err.cell_index, err.exec_count,
                                                    f"{err.ename}: {err.evalue}")
    except Exception as err:  # a kernel that died, a notebook that cannot be read: still name the notebook
        return time.perf_counter() - start, (f"notebook {Path(nb).name} could not be executed: "
                                             f"{type(err).__name__}: {err}\nthe partial executed notebook (if any) is "
                                             f"kept at {target}")
    return time.perf_counter() - start, None
