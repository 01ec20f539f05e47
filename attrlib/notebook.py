"""One notebook executed with papermill on its kernel: the study runner's unit of work (`attrlib.study.runner`).

It imports papermill, nbformat, jupyter_client and jupyter_core and nothing of attrlib. A parallel study runs
each notebook from a fresh worker interpreter (spawn) that imports this module alone: importing the runner, in the
`study` package, would load torch, torchvision and the data layer there (`attrlib.study` gives the notebooks their
session), about 12 CPU s per worker for a process that only drives papermill (benchmarks/bench_study_overheads.py).

A process executes its notebooks one after the other on one kernel of its own (`fresh=False`, the study's default):
before each notebook the kernel's namespace is reset (`%reset -f`), its figures closed, the global random streams
(torch, NumPy, Python) seeded afresh and the working directory set, so a notebook sees none of the one before
(a change of this process's environment starts a new kernel: a kernel reads it once);
what stays is the modules it imported, about 9 CPU s of torch, torchvision, scikit-learn and attrlib per notebook
(benchmarks/bench_study_overheads.py). `fresh=True` starts a kernel per notebook, as JupyterLab runs them.
"""
from __future__ import annotations

import atexit
import os
import time
from pathlib import Path
from typing import Any, Iterable

import nbformat
import papermill as pm
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from jupyter_core.utils import run_sync

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


# run on a kept kernel before each notebook: what a fresh kernel would start from, the imported modules aside (a
# fresh interpreter seeds torch's, NumPy's and Python's global random streams from the OS: so are they here)
RESET = """get_ipython().run_line_magic("reset", "-f")
get_ipython().execution_count = 1  # the notebook's first cell is [1], as on a fresh kernel
import gc as _gc, os as _os, random as _random, sys as _sys
if "matplotlib.pyplot" in _sys.modules:
    _sys.modules["matplotlib.pyplot"].close("all")
if "torch" in _sys.modules:
    _sys.modules["torch"].seed()
if "numpy" in _sys.modules:
    _sys.modules["numpy"].random.seed()
_random.seed()
_registry = None
for _module in list(_sys.modules.values()):  # a warning shown once before is shown again, as in a fresh kernel
    try:  # vars: a module's own dictionary (torch.ops answers any attribute asked of it)
        _registry = vars(_module).get("__warningregistry__")
    except TypeError:
        continue
    if isinstance(_registry, dict):
        _registry.clear()
_os.chdir({cwd!r})
_gc.collect()
if "torch" in _sys.modules and _sys.modules["torch"].cuda.is_initialized():
    _sys.modules["torch"].cuda.empty_cache()  # what the last notebook held on the GPU, given back as at its end
del _gc, _os, _random, _sys, _module, _registry
"""
RESET_TIMEOUT = 60  # seconds a kept kernel has to become ready and reset, else it is replaced


class _KeptKernelManager(AsyncKernelManager):
    """A kernel manager that remembers the clients it gave out. nbclient stops only the clients of a manager it
    owns: a kept kernel's would keep their sockets and heartbeat thread (and buffer every later notebook's
    output) until the process ends. Asynchronous, as papermill's own manager: nbclient runs on an event loop,
    where a synchronous manager's liveness check blocks (a kernel that died would hang the notebook)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.clients: list = []
        self.environment = dict(os.environ)  # what the kernel it starts reads, once

    def client(self, **kwargs):
        kc = super().client(**kwargs)
        self.clients.append(kc)
        return kc

    def stop_clients(self) -> None:
        while self.clients:
            self.clients.pop().stop_channels()


_KERNELS: dict[str, _KeptKernelManager] = {}  # this process's kept kernel per kernel name


def _drop(name: str) -> None:
    km = _KERNELS.pop(name, None)
    if km is not None:
        km.stop_clients()
        run_sync(km.shutdown_kernel)(now=True)  # its process, ports and files


def shutdown_kernels() -> None:
    """Stop this process's kept kernels (a study ends with them; the process's exit does it too)."""
    for name in list(_KERNELS):
        _drop(name)


atexit.register(shutdown_kernels)


def _reset(km: _KeptKernelManager, cwd: str) -> str | None:
    """Run RESET on the kernel: None, or why it failed (an error, a kernel still busy or not answering)."""
    client = km.client()
    client.start_channels()
    try:
        run_sync(client.wait_for_ready)(timeout=RESET_TIMEOUT)
        reply = run_sync(client.execute_interactive)(RESET.format(cwd=str(cwd)), timeout=RESET_TIMEOUT,
                                                     output_hook=lambda msg: None)
    except Exception as err:  # not ready in time (RuntimeError), no reply in time (TimeoutError), a closed socket
        return f"{type(err).__name__}: {err}"
    finally:
        km.stop_clients()
    content = reply["content"]
    return None if content["status"] == "ok" else f"{content.get('ename')}: {content.get('evalue')}"


def _kept_kernel(name: str, cwd: str) -> _KeptKernelManager:
    """This process's live kernel `name`, reset; started in `cwd` if there is none, if the last one died, if it
    cannot be reset (still busy, say), or if this process's environment changed since it started (a kernel reads
    its environment once: a variable set since, such as $ATTRLIB_ROOT, must reach the next notebook as it would
    reach a fresh kernel)."""
    km = _KERNELS.get(name)
    if km is not None and (not run_sync(km.is_alive)() or km.environment != dict(os.environ)
                           or _reset(km, cwd) is not None):
        _drop(name)
        km = None
    if km is None:
        km = _KERNELS[name] = _KeptKernelManager(kernel_name=name)
        run_sync(km.start_kernel)(cwd=cwd)
        why = _reset(km, cwd)
        if why is not None:
            _drop(name)
            raise RuntimeError(f"a new kernel {name!r} could not be prepared for the notebook: {why}")
    return km


def execute(nb: str, target: str, params: dict, cwd: str, fresh: bool = False,
            progress: bool = False) -> tuple[float, str | None]:
    """Execute notebook `nb` into `target` with `params` in `cwd`: (seconds, None) or (seconds, the failure
    message naming the notebook and the cell). fresh: a kernel of its own (else this process's kept kernel,
    reset first: the module docstring)."""
    start = time.perf_counter()
    kernel = notebook_kernel(nb)
    kept = None
    try:
        kept = None if fresh else _kept_kernel(kernel, cwd)
        pm.execute_notebook(nb, target, parameters=params, kernel_name=kernel, progress_bar=progress, cwd=cwd,
                            **({"km": kept} if kept else {}))
    except pm.PapermillExecutionError as err:
        return time.perf_counter() - start, failure(Path(nb).name, Path(target), err.cell_index, err.exec_count,
                                                    f"{err.ename}: {err.evalue}")
    except Exception as err:  # a kernel that died, a notebook that cannot be read: still name the notebook
        if kept is not None:
            _drop(kernel)  # whatever state it was left in, the next notebook starts on a new kernel
        return time.perf_counter() - start, (f"notebook {Path(nb).name} could not be executed: "
                                             f"{type(err).__name__}: {err}\nthe partial executed notebook (if any) is "
                                             f"kept at {target}")
    finally:
        if kept is not None:
            kept.stop_clients()  # nbclient's, which it leaves running on a manager it does not own
    return time.perf_counter() - start, None
