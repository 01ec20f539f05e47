"""The study's runner and the library pieces it adds: a study on a messy folder (notebooks 01 and 02), the runner's
lanes, kept kernels and failure path, seeds and kernels reaching every notebook, a notebook run from notebooks/,
the unbiased oracle data, gap closed against two references, the image hook robustness uses, the fast bootstrap.
The quick study's readers are in test_quick_study.py and test_quick_study_report.py.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from attrlib.reporting import COMPACT_GAIN

from conftest import LOG_OR_BAR, NOTEBOOKS, REPO, numbered_notebooks as _numbered

pytest.importorskip("papermill")


def _write_notebook(path: Path, *sources: str) -> None:
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    cells = [new_code_cell(s) for s in sources]
    cells[0].metadata["tags"] = ["parameters"]
    nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                            "language": "python"}})
    nbformat.write(nb, path)


PARAMS = 'profile = "quick"\ndata = ""\nheldout = "military_vehicle"\nruns = "runs"\nfigures = "figures"\n' \
         'results = "results"\ndevice = "auto"\nthreads = 0\n'


def _run_study(cwd: Path, *args: str) -> dict:
    """`attrlib study --profile quick ...` in `cwd` (its data, runs/, figures/, results/, runs/notebooks/ all
    land there), one torch thread per kernel; the kernels import the attrlib under test."""
    from attrlib.cli import main

    saved = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "PYTHONPATH")}
    old_cwd = os.getcwd()
    os.chdir(cwd)
    os.environ["OMP_NUM_THREADS"] = "1"  # the kernels inherit it: torch starts with one thread
    # the kernels run in `cwd`, outside the repository: they import the attrlib under test, not an installed one
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), saved["PYTHONPATH"]) if p)
    start = time.perf_counter()
    try:
        code = main(["study", "--profile", "quick", "--notebooks", str(NOTEBOOKS), "--device", "cpu", *args])
    finally:
        os.chdir(old_cwd)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    seconds = time.perf_counter() - start
    (cwd / "study_seconds.txt").write_text(f"{seconds:.1f}\n")
    print(f"\nquick study {' '.join(args)}: {len(_numbered())} notebooks in {seconds:.0f} s")
    return {"cwd": cwd, "code": code, "seconds": seconds}


# the notebooks that read a user's folder file by file: the audit (01) and the first training and its
# per-image predictions (02); the later notebooks read run folders, which the quick study covers
MESSY_CORE = ("01", "02")


@pytest.fixture(scope="session")
def messy_core(tmp_path_factory):
    """`attrlib study --profile quick --data <messy> --heldout boat --on-bad skip --jobs 1 --only 01 --only 02`: a
    folder as a user brings it (conftest.make_messy_data: mixed sizes and aspect ratios, under-crop and huge images,
    JPEG, RGBA, palette and 16-bit PNGs, missing cells, a held-out subclass one generator lacks, two bad files)."""
    import shutil

    from conftest import MESSY_HELDOUT, make_messy_data

    cwd = tmp_path_factory.mktemp("messy_study")
    # a project's root, as a user's clone: its marker and notebook 02 in notebooks/ (where JupyterLab's kernel runs
    # it: test_a_notebook_run_from_notebooks_reuses_the_runs_trained_from_the_root)
    (cwd / "pyproject.toml").write_text("[project]\nname = 'scratch'\n")
    (cwd / "notebooks").mkdir()
    shutil.copy(NOTEBOOKS / "02_baseline.ipynb", cwd / "notebooks")
    data = make_messy_data(tmp_path_factory.mktemp("messy"))
    only = [a for n in MESSY_CORE for a in ("--only", n)]
    # one notebook at a time: no lane workers to start (the quick study and the side-by-side test run lanes)
    return {**_run_study(cwd, "--data", str(data), "--heldout", MESSY_HELDOUT, "--on-bad", "skip", "--jobs", "1",
                         *only), "data": data}


@pytest.fixture(scope="session")
def messy_study(messy_core):
    """The rest of the numbered notebooks on the same messy folder, in the same folder (01 and 02's runs reused)."""
    from conftest import MESSY_HELDOUT

    rest = [a for n in _numbered() if n[:2] not in MESSY_CORE for a in ("--only", n[:2])]
    return {**messy_core, **_run_study(messy_core["cwd"], "--data", str(messy_core["data"]), "--heldout",
                                       MESSY_HELDOUT, "--on-bad", "skip", *rest)}


def _no_errors(cwd: Path, names) -> None:
    for name in names:
        nb = json.loads((cwd / "runs" / "notebooks" / f"{name}.ipynb").read_text())
        errors = [o for c in nb["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
        assert not errors, (name, errors)


def test_the_data_path_runs_on_a_messy_folder(messy_core):
    cwd = messy_core["cwd"]
    assert messy_core["code"] == 0
    core = [n for n in _numbered() if n[:2] in MESSY_CORE]
    assert sorted(p.stem for p in (cwd / "runs" / "notebooks").glob("*.ipynb")) == core
    _no_errors(cwd, core)
    skipped = pd.read_csv(cwd / "results" / "01_skipped_files.csv")
    assert sorted(Path(p).name for p in skipped["path"]) == ["notes.jpg", "truncated.png"]
    assert skipped["reason"].str.contains("truncated").any() and skipped["reason"].str.contains("not an image").any()
    audit = pd.read_csv(cwd / "results" / "01_shortcut_audit.csv", index_col=0)
    assert "jpeg" in audit.loc["format", "verdict"] and "huge" in audit.loc["size", "verdict"]
    assert "rgba" in audit.loc["mode", "verdict"]
    # one row per usable image of the held-out subclass, whatever its size: patches are averaged per image
    runs = list((cwd / "runs" / "baseline").glob("*/predictions.csv"))
    test = pd.read_csv(runs[0]).query("split == 'test'")
    assert len(test) == 16 and test["path"].is_unique  # 4 generators x 4 boats; `huge` has none


@pytest.mark.slow
def test_every_notebook_runs_on_a_messy_folder(messy_study):
    cwd = messy_study["cwd"]
    assert messy_study["code"] == 0
    assert sorted(p.stem for p in (cwd / "runs" / "notebooks").glob("*.ipynb")) == _numbered()
    _no_errors(cwd, _numbered())




def test_the_report_needs_an_executed_study(tmp_path, capsys):
    from attrlib.cli import main

    assert main(["report", "--executed", str(tmp_path / "nothing"), "--out", str(tmp_path / "report")]) == 2
    assert "attrlib study" in capsys.readouterr().err
    assert not (tmp_path / "report").exists()


def test_the_runner_uses_the_notebooks_kernel_or_says_it_falls_back(tmp_path, capsys):
    from attrlib.study import notebook_kernel

    path = tmp_path / "00_x.ipynb"
    _write_notebook(path, PARAMS)
    nb = json.loads(path.read_text())
    nb["metadata"]["kernelspec"] = {"name": "attrlib", "display_name": "attrlib (.venv)", "language": "python"}
    path.write_text(json.dumps(nb))
    assert notebook_kernel(path, installed=["attrlib", "python3"]) == "attrlib"
    assert capsys.readouterr().out == ""
    assert notebook_kernel(path, installed=["python3"]) == "python3"
    said = capsys.readouterr().out
    assert "'attrlib' is not installed" in said and "ipykernel install" in said
    for numbered in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"):
        assert notebook_kernel(numbered, installed=["attrlib", "python3"]) == "attrlib"


def test_lanes_default_to_the_cores_and_a_bad_value_is_refused():
    """run_study's jobs and threads of 0 (the CLI's default): up to 4 notebooks at a time, the cores shared among
    them; one notebook keeps torch's own thread count."""
    from attrlib.errors import ConfigError
    from attrlib.study.runner import lanes

    assert [lanes(cores=c) for c in (1, 2, 8, 16)] == [(1, 0), (2, 1), (4, 2), (4, 4)]
    assert lanes(1, cores=8) == (1, 0) and lanes(2, 3, cores=8) == (2, 3) and lanes(3, cores=8) == (3, 2)
    for bad in ({"jobs": -1}, {"threads": -2}):
        with pytest.raises(ConfigError, match="must be 0"):
            lanes(**bad)


def test_a_lane_worker_drives_papermill_without_loading_torch(monkeypatch):
    """A parallel study's lanes are fresh interpreters (spawn) that unpickle the function they run: it is
    `attrlib.notebook.execute`, whose module loads neither torch nor the study package (which would cost each
    worker about 8 CPU s of imports; the notebooks' kernels load what they need)."""
    import subprocess
    import sys

    from attrlib import notebook
    from attrlib.study import runner

    submitted = []

    class Pool:  # records what run_study's lanes would be asked to run
        def __init__(self, *a, **k): pass
        def __enter__(self): return self
        def __exit__(self, *a): return False
        def submit(self, fn, *args):
            from concurrent.futures import Future
            submitted.append(fn)
            done = Future()
            done.set_result((0.0, None))
            return done

    monkeypatch.setattr(runner, "ProcessPoolExecutor", Pool)
    runner._run_parallel([Path("00_a.ipynb"), Path("01_b.ipynb")], Path("out"), {"threads": 1}, 2)
    assert submitted == [notebook.execute, notebook.execute]
    code = ("import pickle, sys; from attrlib.notebook import execute; pickle.loads(pickle.dumps(execute)); "
            "print(sorted(m for m in ('torch', 'torchvision', 'attrlib.study', 'attrlib.data') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO,
                         env={**os.environ, "PYTHONPATH": str(REPO)}).stdout
    assert out.strip() == "[]"


def test_a_lane_keeps_its_kernel_and_resets_it_between_notebooks(tmp_path, monkeypatch):
    """A study's lane executes its notebooks on one kernel (its imports are the cost a notebook would pay again):
    the next notebook sees none of the previous one's names, starts at [1] in its own working directory with
    the global random streams seeded afresh (as a fresh kernel's); a failed notebook does not stop the next, a kernel that died
    is replaced; fresh=True gives each notebook a kernel of its own (the pids differ)."""
    import json

    from attrlib import notebook

    probe = ('import json, os, numpy\n'  # NumPy's global stream: reset as torch's and Python's are, cheaper to load
             'print(json.dumps(dict(pid=os.getpid(), cwd=os.getcwd(), leaked="mine" in dir(), x=x,'
             ' draw=numpy.random.rand())))')
    _write_notebook(tmp_path / "a.ipynb", "x = 0", probe, "mine = 1\nnumpy.random.seed(5)",
                    "import sys; sys.path.insert(0, %r); import noisy; noisy.warn()\n" % str(tmp_path)
                    # a module that answers any attribute (as torch.ops does) and one that is no module at all
                    + "sys.modules['odd'] = type('Odd', (), {'__getattr__': lambda self, n: 1})()\n"
                    + "sys.modules['none'] = None")
    (tmp_path / "noisy.py").write_text("import warnings\ndef warn():\n    warnings.warn('said once per module')\n")
    _write_notebook(tmp_path / "fails.ipynb", "x = 0", "mine = 2\nraise ValueError('on purpose')")
    _write_notebook(tmp_path / "dies.ipynb", "x = 0", "import os\nos._exit(3)")

    def run(nb: str, x: int, cwd: Path, fresh: bool = False) -> tuple[dict, list]:
        target = tmp_path / f"out-{x}.ipynb"
        seconds, error = notebook.execute(str(tmp_path / nb), str(target), {"x": x}, str(cwd), fresh=fresh)
        assert error is None, error
        cells = json.loads(target.read_text())["cells"]
        if nb == "a.ipynb":  # shown by every notebook, as in a fresh kernel (the module's registry is cleared)
            assert "said once per module" in "".join("".join(o.get("text", "")) for o in cells[4]["outputs"])
        return json.loads("".join(cells[2]["outputs"][0]["text"])), [c["execution_count"] for c in cells]

    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    handed = []  # every client of a kept kernel (the reset's, nbclient's): none may keep its channels running
    real_client = notebook._KeptKernelManager.client
    monkeypatch.setattr(notebook._KeptKernelManager, "client",
                        lambda self, **kw: handed.append(real_client(self, **kw)) or handed[-1])
    first, counts = run("a.ipynb", 1, tmp_path / "one")
    assert counts == [1, 2, 3, 4, 5] and first["x"] == 1 and not first["leaked"]
    second, counts = run("a.ipynb", 2, tmp_path / "two")
    assert len(handed) >= 4 and not any(kc.channels_running for kc in handed)  # sockets and heartbeats stopped
    assert second["pid"] == first["pid"] and counts == [1, 2, 3, 4, 5]  # the kept kernel, counted afresh
    assert second["cwd"] == str(tmp_path / "two") and second["x"] == 2 and not second["leaked"]
    import numpy as np

    assert second["draw"] != np.random.RandomState(5).rand()  # the first notebook's seed(5) did not carry over
    _, error = notebook.execute(str(tmp_path / "fails.ipynb"), str(tmp_path / "f.ipynb"), {"x": 3}, str(tmp_path))
    assert "fails.ipynb failed in cell" in error and "on purpose" in error
    after_failure, _ = run("a.ipynb", 4, tmp_path)
    assert after_failure["pid"] == first["pid"] and not after_failure["leaked"]
    _, error = notebook.execute(str(tmp_path / "dies.ipynb"), str(tmp_path / "d.ipynb"), {"x": 5}, str(tmp_path))
    assert error and "dies.ipynb" in error
    replaced, _ = run("a.ipynb", 6, tmp_path)
    assert replaced["pid"] != first["pid"]
    fresh, _ = run("a.ipynb", 7, tmp_path, fresh=True)
    assert fresh["pid"] != replaced["pid"] and not fresh["leaked"]
    os.environ["ATTRLIB_TEST_KEPT_KERNEL"] = "changed"  # what a fresh kernel would see: a kernel started anew
    try:
        changed, _ = run("a.ipynb", 8, tmp_path)
    finally:
        del os.environ["ATTRLIB_TEST_KEPT_KERNEL"]
    assert changed["pid"] != replaced["pid"]


def _failing_study(tmp_path, tiny_data, jobs: int, notebooks: dict) -> tuple[Path, str]:
    """Write notebooks {stem: cell sources} (each after a parameters cell), run them as a study that must fail;
    the folder of executed copies and the StudyError's message."""
    from attrlib.study import StudyError, run_study

    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    for stem, cells in notebooks.items():
        _write_notebook(nbs / f"{stem}.ipynb", PARAMS, *cells)
    out = tmp_path / "executed"
    with pytest.raises(StudyError) as err:
        run_study(profile="quick", data=str(tiny_data), notebooks=nbs, out=out, device="cpu", progress=False,
                  jobs=jobs, results=str(tmp_path / "results"))
    return out, str(err.value)


def test_a_failing_notebook_is_named_with_its_cell_and_kept(tmp_path, tiny_data, capsys):
    out, message = _failing_study(tmp_path, tiny_data, 1, {"00_fine": ["x = 1"],
                                  "01_broken": ["y = 2", "raise ValueError('deliberately broken')"], "02_after": ["z = 3"]})
    assert "01_broken.ipynb" in message and "cell" in message and "deliberately broken" in message
    assert str(out / "01_broken.ipynb") in message
    partial = json.loads((out / "01_broken.ipynb").read_text())
    assert any(o.get("output_type") == "error" for c in partial["cells"] for o in c.get("outputs", []))
    assert (out / "00_fine.ipynb").is_file() and not (out / "02_after.ipynb").exists()  # stopped
    # its provenance says the study failed: no finished study claims results it may have overwritten
    [record] = json.loads((tmp_path / "results" / "provenance.json").read_text())["studies"]
    assert record["status"] == "failed" and record["notebooks"] == ["00_fine.ipynb", "01_broken.ipynb", "02_after.ipynb"]
    printed = capsys.readouterr().out
    assert "[1/3] 00_fine.ipynb" in printed and "done in" in printed and "[2/3] 01_broken.ipynb" in printed


def test_side_by_side_a_failure_starts_nothing_more_and_lets_the_running_one_finish(tmp_path, tiny_data, capsys):
    """Two notebooks at a time: 00 fails at once while 01 still runs; 02 never starts, 01 completes (its
    runs would be kept), and the error names 00 and its cell."""
    out, message = _failing_study(tmp_path, tiny_data, 2, {"00_broken": ["raise ValueError('deliberately broken')"],
                                  "01_slow": ["import time\ntime.sleep(8)", "finished = True"], "02_after": ["z = 3"]})
    assert "00_broken.ipynb failed in cell" in message and "deliberately broken" in message
    assert str(out / "00_broken.ipynb") in message
    slow = json.loads((out / "01_slow.ipynb").read_text())
    assert slow["cells"][-1]["execution_count"] is not None  # ran to its last cell
    assert not (out / "02_after.ipynb").exists()
    printed = capsys.readouterr().out
    assert "2 at a time" in printed and "[failed] 00_broken.ipynb" in printed and "01_slow.ipynb done in" in printed


def test_seeds_reach_every_notebook_and_the_records_and_a_bad_value_is_refused(tmp_path, tiny_data, capsys):
    """`attrlib study --seeds 3,5`: a smaller (or other) protocol than the profile's. Every notebook gets the seeds
    as its `seeds` parameter, provenance.json and study_timing.json record them; without the option the notebooks
    keep their own default (the profile's seeds) and the records say the profile's. A bad list fails before any
    work, naming the option. A study's notebooks share its kernel (reset between them); `--fresh-kernels` gives
    each one a kernel of its own, and study_timing.json says so."""
    from attrlib.cli import main
    from attrlib.config import PROFILES

    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    _write_notebook(nbs / "00_seeds.ipynb", PARAMS + "seeds = []\n",
                    "import json, pathlib; pathlib.Path(results).mkdir(exist_ok=True)\n"
                    "(pathlib.Path(results) / 'seeds.json').write_text(json.dumps(seeds))\n"
                    "import os; (pathlib.Path(results) / 'pid-00.txt').write_text(str(os.getpid()))")
    _write_notebook(nbs / "01_pid.ipynb", PARAMS, "import os, pathlib\n"
                    "(pathlib.Path(results) / 'pid-01.txt').write_text(str(os.getpid()))")

    def pids() -> list[str]:
        return [(tmp_path / "results" / f"pid-0{i}.txt").read_text() for i in (0, 1)]

    old_cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert main(["study", "--profile", "quick", "--data", str(tiny_data), "--notebooks", str(nbs),
                     "--seeds", "3,5", "--jobs", "1"]) == 0
        assert json.loads((tmp_path / "results" / "seeds.json").read_text()) == [3, 5]
        [record] = json.loads((tmp_path / "results" / "provenance.json").read_text())["studies"]
        timing = json.loads((tmp_path / "runs" / "notebooks" / "study_timing.json").read_text())
        assert record["seeds"] == timing["seeds"] == [3, 5]
        assert pids()[0] == pids()[1]  # one kernel for the study's notebooks
        assert main(["study", "--profile", "quick", "--data", str(tiny_data), "--notebooks", str(nbs),
                     "--jobs", "1"]) == 0
        assert json.loads((tmp_path / "results" / "seeds.json").read_text()) == []  # the notebook's own default
        timing = json.loads((tmp_path / "runs" / "notebooks" / "study_timing.json").read_text())
        assert timing["seeds"] == list(PROFILES["quick"]["seeds"]) and timing["fresh_kernels"] is False
        assert main(["study", "--profile", "quick", "--data", str(tiny_data), "--notebooks", str(nbs),
                     "--jobs", "1", "--fresh-kernels"]) == 0
        assert pids()[0] != pids()[1]  # a kernel each
        assert json.loads((tmp_path / "runs" / "notebooks" / "study_timing.json").read_text())["fresh_kernels"] is True
        timing_before = (tmp_path / "runs" / "notebooks" / "study_timing.json").read_text()
        assert main(["study", "--profile", "quick", "--data", str(tiny_data), "--notebooks", str(nbs),
                     "--jobs", "1", "--seeds", "7", "--results", "results_mine", "--figures", "figures_mine"]) == 0
        assert (tmp_path / "runs" / "notebooks" / "study_timing.json").read_text() == timing_before  # kept
        assert json.loads((tmp_path / "runs" / "notebooks_results_mine" / "study_timing.json").read_text())["seeds"] == [7]
        assert json.loads((tmp_path / "results_mine" / "seeds.json").read_text()) == [7]   # there, not in results/
        assert json.loads((tmp_path / "results" / "seeds.json").read_text()) == []
        [record] = json.loads((tmp_path / "results_mine" / "provenance.json").read_text())["studies"]
        assert record["seeds"] == [7]
        for bad in ("1,x", "2,2", "-1"):
            with pytest.raises(SystemExit):
                main(["study", "--profile", "quick", "--seeds", bad])
            assert "--seeds" in capsys.readouterr().err
    finally:
        os.chdir(old_cwd)


def test_the_cli_reports_a_failing_study_and_exits_1(tmp_path, tiny_data, capsys):
    from attrlib.cli import main

    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    _write_notebook(nbs / "05_broken.ipynb", PARAMS, "raise RuntimeError('boom')")
    old_cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        code = main(["study", "--profile", "quick", "--data", str(tiny_data), "--notebooks", str(nbs)])
    finally:
        os.chdir(old_cwd)
    assert code == 1
    assert "05_broken.ipynb failed in cell" in capsys.readouterr().err
    assert (tmp_path / "runs" / "notebooks" / "05_broken.ipynb").is_file()


def _output_lines(nb: dict) -> list[str]:
    """Every line a reader sees in a notebook's outputs: streams, and the text/plain and text/html of results."""
    lines = []
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            texts = [out.get("text", "")] + [out.get("data", {}).get(k, "") for k in ("text/plain", "text/html")]
            for text in texts:
                lines += ("".join(text) if isinstance(text, list) else text).splitlines()
    return lines


def test_a_notebook_run_from_notebooks_reuses_the_runs_trained_from_the_root(messy_core, tmp_path, monkeypatch):
    """JupyterLab's kernel works in notebooks/. Notebook 02 run there (papermill with cwd notebooks/, its folders
    left at their defaults) reuses the run `attrlib study` trained from the root (messy_core's study: the root
    holds pyproject.toml and notebooks/02_baseline.ipynb): no run trained or added, nothing written under
    notebooks/, its figure and tables rewritten in the root's folders. The study's copy, which trained, shows no
    training log line and no progress bar."""
    import papermill as pm

    from attrlib.study import notebook_kernel

    root = messy_core["cwd"]
    notebook = root / "notebooks" / "02_baseline.ipynb"
    assert messy_core["code"] == 0
    monkeypatch.delenv("ATTRLIB_ROOT", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the kernels inherit these
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))
    runs = {p: p.stat().st_mtime_ns for p in (root / "runs").glob("*/*/done")}
    # the training log's place (a run of epochs has one; DFR, residual statistics and an assembled reference train none)
    assert runs and all((p.parent / "train.log").is_file() for p in runs if (p.parent / "history.jsonl").is_file())
    study_copy = json.loads((root / "runs" / "notebooks" / "02_baseline.ipynb").read_text())
    lines = _output_lines(study_copy)
    assert lines and not [line for line in lines if LOG_OR_BAR.search(line)]
    # its 21-column summary as a narrow headline, the whole table collapsed (attrlib.reporting.html)
    assert any("<details class='attr-full'>" in line for line in lines) and not any(str(root) in l for l in lines
                                                                                    if "<" in l)
    figure = root / "figures" / "02_baseline_confusion.png"
    written = figure.stat().st_mtime_ns
    under_notebooks = sorted((root / "notebooks").rglob("*"))
    folders = sorted(p for p in (root / "runs").glob("*/*") if p.is_dir())  # messy_study's too, under test-all

    monkeypatch.chdir(root / "notebooks")  # as JupyterLab's kernel
    study = study_copy["metadata"]["papermill"]["parameters"]  # the study's data, rotation and bad-file policy
    pm.execute_notebook(str(notebook), str(tmp_path / "lab.ipynb"), parameters={k: study[k] for k in (
                        "profile", "data", "heldout", "on_bad", "device")}, kernel_name=notebook_kernel(notebook),
                        progress_bar=False, cwd=str(root / "notebooks"))
    assert {p: p.stat().st_mtime_ns for p in (root / "runs").glob("*/*/done")} == runs  # reused, none added
    assert sorted(p for p in (root / "runs").glob("*/*") if p.is_dir()) == folders  # no run folder begun either
    assert sorted((root / "notebooks").rglob("*")) == under_notebooks == [notebook]
    assert figure.stat().st_mtime_ns > written  # its outputs went to the root's folders


# ------------------------------------------------------------------------------------- library pieces
def test_resolve_data_unbiased_variant(tmp_path, tiny_data, monkeypatch):
    from attrlib.simulator import synthesize
    from attrlib.errors import ConfigError
    from attrlib.study import STUDY_BENCHMARKS, resolve_data, unbiased_variant

    assert resolve_data("quick", str(tiny_data), variant="unbiased") is None  # the user's data has none
    with pytest.raises(ConfigError, match="valid variants"):
        resolve_data("quick", str(tiny_data), variant="fair")
    root = synthesize(tmp_path / "bench", scale=1 / 1000, size=16, progress=False)  # 16 px: the cheapest calibrations
    twin = unbiased_variant(root)
    assert twin == tmp_path / "bench-unbiased"
    params = json.loads((twin / "benchmark.json").read_text())
    assert params["variant"] == "unbiased" and params["size"] == 16 and params["scale"] == pytest.approx(1 / 1000)
    assert unbiased_variant(twin) == twin
    monkeypatch.chdir(tmp_path)  # no pyproject.toml or .git above it: the project root is the working directory
    monkeypatch.delenv("ATTRLIB_ROOT", raising=False)
    monkeypatch.setitem(STUDY_BENCHMARKS, "quick", dict(out="bench", scale=1 / 1000, size=16))
    assert resolve_data("quick", variant="unbiased") == tmp_path.resolve() / "bench-unbiased"


def test_gap_closed_against_two_references_and_a_missing_oracle(tiny_data, tmp_path):
    from attrlib import sweep
    from attrlib.evaluation import summary_table
    from attrlib.reporting import format_summary

    common = dict(data=str(tiny_data), runs=str(tmp_path / "runs"), progress=False, device="cpu")
    runs = {name: sweep.train_seeds(name, "quick", [0], **common) for name in ("baseline", "fine_tuning")}
    numbers = summary_table(runs, oracle={"oracle": None, "fine_tuning": runs["fine_tuning"]}, n_boot=20)
    assert numbers["gap_closed_oracle"].isna().all()
    assert numbers["note"].str.contains("vs oracle: no oracle given").all()
    base, ft = numbers.loc["baseline", "accuracy"], numbers.loc["fine_tuning", "accuracy"]
    if ft > base:
        assert numbers.loc["fine_tuning", "gap_closed_fine_tuning"] == pytest.approx(1.0)
        assert numbers.loc["baseline", "gap_closed_fine_tuning"] == pytest.approx(0.0)
    text = format_summary(summary_table(runs, oracle={"oracle": None, "fine_tuning": "fine_tuning"}, n_boot=20))
    assert {COMPACT_GAIN, "gap closed vs fine_tuning"} <= set(text.columns)
    assert "mean ± std over 1 seed(s)" in text.attrs["caption"]


def test_image_dataset_pre_policy_sees_the_decoded_image(tiny_data):
    from attrlib.data import ImageDataset, load_study_data
    from attrlib.errors import DataError

    data = load_study_data(tiny_data)
    frame = data.split("test").iloc[:4]
    seen = []

    def invert(img):
        seen.append((img.dtype, img.shape))
        return 255 - img

    plain = ImageDataset(frame, data, size=32, train=False)
    inverted = ImageDataset(frame, data, size=32, train=False, pre_policy=invert)
    assert torch_allclose(inverted[0]["x"], 1.0 - plain[0]["x"])
    assert seen and all(d == np.uint8 and s[2] == 3 for d, s in seen)
    with pytest.raises(DataError, match="not callable"):
        ImageDataset(frame, data, size=32, train=False, pre_policy="jpeg")


def torch_allclose(a, b) -> bool:
    import torch

    return bool(torch.allclose(a, b, atol=1e-6))


@pytest.mark.parametrize("n_classes", [4, None])
def test_fast_bootstrap_equals_scikit_learn(n_classes):
    from sklearn.metrics import accuracy_score, f1_score

    from attrlib.evaluation import bootstrap_ci

    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, 40)
    pred = np.stack([np.where(rng.random(40) < 0.6, y, rng.integers(0, 3, 40)) for _ in range(3)])
    labels = None if n_classes is None else list(range(n_classes))
    for metric, fn in (("accuracy", accuracy_score),
                       ("macro_f1", lambda t, p: f1_score(t, p, labels=labels, average="macro", zero_division=0))):
        fast = bootstrap_ci(y, pred, metric, n_boot=50, seed=1, n_classes=n_classes)
        slow = bootstrap_ci(y, pred, lambda t, p: fn(t, p), n_boot=50, seed=1)
        assert fast == pytest.approx(slow)
        assert fast.low <= fast.estimate <= fast.high
