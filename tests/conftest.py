"""Shared fixtures. `tiny_data`: a few hundred 32x32 PNGs in the layout attrlib reads, made once per session.
`quick_study`: `attrlib study --profile quick` once per test run (shared by xdist's workers), started in the
background as soon as the tests that read it are collected (it runs beside the other tests; those tests run last).

Six generators, three training subclasses with a generator x subclass bias (as in seed 002, some cells are
empty) and one held-out subclass seen by every generator. Each generator adds its own periodic pattern
(the "fingerprint"); each subclass is a flat colour plus a blob (the "content").
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]

TINY_GENERATORS = ("guided_diffusion", "latent_diffusion", "lsgm", "stylegan2", "stylegan3", "taming_transformers")
TINY_SUBCLASSES = ("car", "face", "horse")
TINY_HELDOUT = "military_vehicle"
# generator -> training subclasses it has (every one has the held-out subclass too, for the test split)
TINY_CELLS = {
    "guided_diffusion": ("horse",),
    "latent_diffusion": ("face", "horse"),
    "lsgm": ("face",),
    "stylegan2": ("car", "face", "horse"),
    "stylegan3": ("face",),
    "taming_transformers": ("car", "face"),
}
TINY_PER_CELL = 8
# Cells drawn after the others, from a generator of their own, so that the images above stay the same: car for a
# third generator makes it a validation subclass the rule accepts (at least 3 generators: splits.choose_val_subclass).
TINY_LATE_CELLS = {"latent_diffusion": ("car",)}
TINY_ALL_CELLS = {g: TINY_CELLS[g] + TINY_LATE_CELLS.get(g, ()) for g in TINY_GENERATORS}

NOTEBOOKS = REPO / "notebooks"
# a training line ("epoch 3 (step 48): loss 1.2, val acc 0.812, 410 img/s") or a tqdm bar (" 40%|####  | 2/5"):
# what no report page or notebook output shown to a reader carries
LOG_OR_BAR = re.compile(r"val acc (?:\d|nan)|\d img/s|\d%\|")


def numbered_notebooks() -> list[str]:
    """The study's notebooks (01_..., 02_...), by stem, in order."""
    return sorted(p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def make_tiny_data(root: Path, per_cell: int = TINY_PER_CELL, size: int = 32, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    colours = {s: rng.uniform(0.2, 0.8, 3) for s in (*TINY_SUBCLASSES, TINY_HELDOUT)}
    def cell(folder: Path, colour: np.ndarray, pattern: np.ndarray, draw: np.random.Generator) -> None:
        """per_cell images of one generator x subclass cell: its colour, a blob, the generator's pattern, noise."""
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(per_cell):
            cy, cx = draw.integers(8, size - 8, 2)
            blob = (((yy - cy) ** 2 + (xx - cx) ** 2) < 36).astype(float)[..., None]
            img = colour + 0.25 * blob + 0.12 * pattern + draw.normal(0, 0.03, (size, size, 3))
            Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(folder / f"{k:03d}.png")

    for gi, gen in enumerate(TINY_GENERATORS):
        period = 2 + gi % 3
        pattern = (((xx // (1 + gi // 3)) % period == 0).astype(float) - 0.5)[..., None] * rng.uniform(0.5, 1.0, 3)
        for sub in (*TINY_CELLS[gen], TINY_HELDOUT):
            cell(root / gen / sub, colours[sub], pattern, rng)
    late = np.random.default_rng([seed, 1])
    for gen, subs in TINY_LATE_CELLS.items():
        gi = TINY_GENERATORS.index(gen)
        period = 2 + gi % 3
        pattern = (((xx // (1 + gi // 3)) % period == 0).astype(float) - 0.5)[..., None] * late.uniform(0.5, 1.0, 3)
        for sub in subs:
            cell(root / gen / sub, colours[sub], pattern, late)
    return root


@pytest.fixture(scope="module")
def one_torch_thread():
    """Many small tensor operations (the simulator): torch's thread pool only adds overhead."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    return make_tiny_data(tmp_path_factory.mktemp("tiny_data"))


MESSY_HELDOUT = "boat"


def make_messy_data(root: Path, seed: int = 0) -> Path:
    """A folder as a user brings it: every kind of file the data layer must take, and some it must refuse.

    Five generators (each its own periodic trace) over cat / dog / car and a held-out `boat` that one
    generator lacks, cells missing; per generator one kind of file: PNG RGB of mixed, non-square sizes with
    a few smaller than the crop (24 px), JPEG q85, RGBA PNG, palette and 16-bit greyscale PNG, huge 512 x 384
    PNG. Two bad files: a truncated PNG and a text file named .jpg (`--on-bad skip` leaves them out).
    """
    rng = np.random.default_rng(seed)
    cells = {"png_mixed": ("cat", "dog", "car"), "jpeg": ("cat", "dog"), "rgba": ("dog", "car"),
             "palette_16bit": ("cat",), "huge": ("car", "dog")}
    colours = {s: rng.uniform(0.2, 0.8, 3) for s in ("cat", "dog", "car", MESSY_HELDOUT)}

    def image(gi: int, sub: str, h: int, w: int) -> np.ndarray:
        yy, xx = np.mgrid[0:h, 0:w]
        pattern = ((xx % (2 + gi % 3) == 0).astype(float) - 0.5)[..., None] * 0.12
        blob = (((yy - h / 2) ** 2 + (xx - w / 3) ** 2) < (min(h, w) / 4) ** 2).astype(float)[..., None] * 0.2
        return np.clip(colours[sub] + blob + pattern + rng.normal(0, 0.02, (h, w, 3)), 0, 1)

    for gi, (gen, subs) in enumerate(cells.items()):
        for sub in (*subs, *((MESSY_HELDOUT,) if gen != "huge" else ())):
            folder = root / gen / sub
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(6 if sub != MESSY_HELDOUT else 4):
                if gen == "png_mixed":
                    h, w = [(48, 96), (64, 40), (24, 24), (40, 40)][k % 4]
                    Image.fromarray((image(gi, sub, h, w) * 255).astype(np.uint8)).save(folder / f"{k}.png")
                elif gen == "jpeg":
                    Image.fromarray((image(gi, sub, 80, 80) * 255).astype(np.uint8)).save(folder / f"{k}.jpg", quality=85)
                elif gen == "rgba":
                    rgb = (image(gi, sub, 40, 64) * 255).astype(np.uint8)
                    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
                    Image.fromarray(rgba, "RGBA").save(folder / f"{k}.png")
                elif gen == "palette_16bit":
                    img = Image.fromarray((image(gi, sub, 40, 40) * 255).astype(np.uint8))
                    if k % 2:
                        img.convert("P", palette=Image.Palette.ADAPTIVE).save(folder / f"{k}.png")
                    else:
                        grey = (image(gi, sub, 48, 48).mean(2) * 65535).astype(np.uint16)
                        Image.fromarray(grey).save(folder / f"{k}.png")
                else:
                    Image.fromarray((image(gi, sub, 384, 512) * 255).astype(np.uint8)).save(folder / f"{k}.png")
    good = (root / "png_mixed" / "cat" / "0.png").read_bytes()
    (root / "png_mixed" / "cat" / "truncated.png").write_bytes(good[: len(good) // 2])
    (root / "jpeg" / "dog" / "notes.jpg").write_text("not an image")
    return root


def kill_training_in_epoch(monkeypatch, epoch: int = 2) -> None:
    """Make the engine's next training raise KeyboardInterrupt as epoch `epoch` (0-based) starts: an
    interrupted run, checkpointed after the epochs before it."""
    from attrlib import training

    real = training.engine.train_one_epoch

    def killed(technique, loader, device, current, epochs, progress=True, **kw):
        if current == epoch:
            raise KeyboardInterrupt
        return real(technique, loader, device, current, epochs, progress, **kw)

    monkeypatch.setattr(training.engine, "train_one_epoch", killed)


def train_whole_and_interrupted(config, tmp_path, monkeypatch, epoch: int = 2):
    """Train `config` whole, then again under `tmp_path / "cut"` killed as epoch `epoch` starts: (the whole
    run's folder, the interrupted config, its folder), the interruption still in place (`monkeypatch.undo()`)."""
    import pytest as _pytest

    from attrlib import runfolder, sweep

    whole = sweep.train(config, progress=False)
    cut_config = config.replace(runs=str(tmp_path / "cut"))
    kill_training_in_epoch(monkeypatch, epoch=epoch)
    with _pytest.raises(KeyboardInterrupt):
        sweep.train(cut_config, progress=False)
    return whole, cut_config, runfolder.run_dir(cut_config)


def train_in_fork(config, log: Path, progress: bool = False, env: dict | None = None, err: Path | None = None):
    """`print(sweep.train(config))` in a process of its own, forked from this one with one torch thread and `env`
    added to its environment: a real process to kill, to race, or to be a rank of a process group, without a
    fresh interpreter's imports (about 10 CPU s each). Its stdout goes to `log`, its stderr to `err` (or `log`)."""
    import multiprocessing

    import torch

    from attrlib import sweep

    def child():
        import threading

        from tqdm.std import tqdm

        # tqdm's default lock holds a multiprocessing lock shared with this process across the fork: a child killed
        # while a bar held it would leave every later bar here waiting for it forever. The child gets its own.
        tqdm.set_lock(threading.RLock())
        os.environ.update(env or {})
        torch.set_num_threads(1)
        out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(out, 1)
        os.dup2(os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC) if err else out, 2)  # one file: one offset
        sys.stdout, sys.stderr = open(1, "w", buffering=1, closefd=False), open(2, "w", buffering=1, closefd=False)
        print(sweep.train(config, progress=progress))

    process = multiprocessing.get_context("fork").Process(target=child)
    process.start()
    return process


@pytest.fixture(autouse=True)
def _figure_formats_restored():
    """A notebook session sets the formats save_fig writes (its profile's figure_formats knob) for the process:
    each test starts from, and leaves, the default."""
    from attrlib.reporting import save

    before = save.FIGURE_FORMATS
    yield
    save.FIGURE_FORMATS = before


@pytest.hookimpl(trylast=True)  # after the tmp_path plugin has set up the base temporary folder
def pytest_configure(config):
    """attrlib's shared caches (attrlib.io.cache_root: the simulator's calibrations, a file per family and size;
    data folders' file digests) in this test run's own folder, which xdist's workers and the quick study share:
    every run starts without them, and no test reads or writes the user's ~/.cache/attrlib."""
    os.environ["ATTRLIB_CACHE_DIR"] = str(_run_folder(config) / "caches")


# --------------------------------------------------------------------------------------- the quick study
# The study runs under a wrapper that records its exit code and wall seconds in exit.json (atomically) when it ends,
# whichever pytest process started it: under pytest-xdist (`make test` runs two workers) the first worker to
# collect starts it and the readers of every worker wait for that file.
_WRAPPER = ("import json, os, subprocess, sys, time\n"
            "start = time.perf_counter()\n"
            "code = subprocess.call(sys.argv[2:])\n"
            "with open(sys.argv[1] + '.part', 'w') as fh:\n"
            "    json.dump({'code': code, 'seconds': time.perf_counter() - start}, fh)\n"
            "os.replace(sys.argv[1] + '.part', sys.argv[1])\n")
# A worker's niceness once the study runs: the study (started before, at 0) keeps a core to itself and ends as early
# as it can, since its readers wait for it; the workers share what is left, then both cores
WORKER_NICENESS = 10


class QuickStudy:
    """`attrlib study --profile quick` in a scratch folder, in a process started at collection time, so that its
    notebooks run while the rest of the suite does. One notebook at a time (`--jobs 1`, one kernel): the study
    keeps one core while the suite's workers (lowered in priority) share the other. The kernel imports the attrlib
    under test (PYTHONPATH) with one torch thread (OMP_NUM_THREADS=1), as `_run_study` in test_study.py does for
    the other studies; side-by-side lanes are tested there (test_side_by_side_...).

    One study per test run: its folder is `quick-study` under pytest's base temporary folder, which every xdist
    worker shares (each works in its own popen-gwN below it); the first process to take the lock starts it."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.log, self.exit, self.pid = cwd / "study.log", cwd / "exit.json", cwd / "study.pid"
        self.before = cwd / "repo_before.json"
        self.waited = cwd / f"waited-{os.getpid()}.txt"

    def start(self) -> None:
        """Start the study unless a process of this test run already has."""
        from filelock import FileLock

        with FileLock(str(self.cwd) + ".lock"):
            if self.pid.exists():
                return
            self.cwd.mkdir(parents=True, exist_ok=True)
            # what figures/ and results/ of the repository hold before it runs
            self.before.write_text(json.dumps(sorted(map(str, repo_outputs()))))
            env = {**os.environ, "OMP_NUM_THREADS": "1",
                   "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
            study = [sys.executable, "-m", "attrlib", "study", "--profile", "quick",
                     "--notebooks", str(REPO / "notebooks"), "--device", "cpu", "--jobs", "1"]
            with open(self.log, "wb") as out:
                # its own session: `stop` kills the wrapper and the study as one process group (the kernel, in a
                # session of its own, exits once it sees its parent gone)
                proc = subprocess.Popen([sys.executable, "-c", _WRAPPER, str(self.exit), *study], cwd=self.cwd,
                                        env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            self.pid.write_text(str(proc.pid))

    def result(self) -> dict:
        """Once the study has ended: its folder, exit code, wall seconds, log and what the repository held."""
        asked = time.perf_counter()
        while not self.exit.exists():
            if not _alive(int(self.pid.read_text())):  # killed before it could say how it ended
                time.sleep(1)  # (or it ended between the two looks)
                if not self.exit.exists():
                    pytest.fail(f"the quick study's process ended without recording its exit: log {self.log}")
            time.sleep(0.5)
        self.waited.write_text(f"{time.perf_counter() - asked:.1f}\n")  # the study on the critical path
        ended = json.loads(self.exit.read_text())
        return {"cwd": self.cwd, "code": ended["code"], "seconds": ended["seconds"],
                "repo_before": {Path(p) for p in json.loads(self.before.read_text())},
                "log": self.log.read_text(errors="replace")}

    def summary(self) -> str:
        """How long it ran and how long the suite's processes waited for it (empty if it did not end)."""
        if not self.pid.exists():
            return ""
        if not self.exit.exists():
            return "quick study: did not end (stopped)"
        waited = [float(p.read_text()) for p in self.cwd.glob("waited-*.txt")]
        return (f"quick study (background, one kernel): {json.loads(self.exit.read_text())['seconds']:.0f} s; "
                f"the suite's processes waited {', '.join(f'{w:.0f}' for w in waited) or 'no'} s for it")

    def stop(self) -> None:
        """Kill the study if it is still running (the run was interrupted, or its readers deselected late)."""
        if self.pid.exists() and not self.exit.exists():
            try:
                os.killpg(int(self.pid.read_text()), signal.SIGKILL)
            except ProcessLookupError:
                pass


def _alive(pid: int) -> bool:
    """Whether process `pid` is still running (not ended, nor a zombie its parent has yet to reap)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def repo_outputs() -> set[Path]:
    return {p for d in ("figures", "results") if (REPO / d).is_dir() for p in (REPO / d).rglob("*")}


def _run_folder(config) -> Path:
    """This test run's base temporary folder, the one xdist's workers share (a worker's own is popen-gwN below it)."""
    base = config._tmp_path_factory.getbasetemp()
    return base.parent if hasattr(config, "workerinput") else base


def _quick_study(config) -> QuickStudy:
    """This test run's quick study (started or not)."""
    return QuickStudy(_run_folder(config) / "quick-study")


@pytest.hookimpl(trylast=True)  # after -k / -m deselected theirs: start it only when a test will read it
def pytest_collection_modifyitems(session, config, items):
    readers = [item for item in items if "quick_study" in getattr(item, "fixturenames", ())]
    if not readers or config.option.collectonly:
        return
    items[:] = [item for item in items if item not in readers] + readers  # the study's readers last
    _quick_study(config).start()
    if hasattr(config, "workerinput"):
        os.nice(WORKER_NICENESS)


_SUMMARY: list[str] = []


def pytest_terminal_summary(terminalreporter):
    for line in filter(None, _SUMMARY):
        terminalreporter.write_line(line)


def pytest_sessionfinish(session, exitstatus):
    """In the process that owns the run (xdist's controller, or pytest without workers), once every test is done:
    stop a study still running; remove its folder if the run passed (kept when a test failed: its log and
    notebooks)."""
    if hasattr(session.config, "workerinput"):
        return
    study = _quick_study(session.config)
    study.stop()
    _SUMMARY.append(study.summary())  # printed after this hook (the terminal summary)
    if exitstatus == 0:
        shutil.rmtree(study.cwd, ignore_errors=True)


@pytest.fixture(scope="session")
def quick_study(request):
    """The quick study's folder (cwd), exit code, wall seconds and log, once it has finished."""
    study = _quick_study(request.config)
    study.start()  # collected without the hook (e.g. a plugin reordering): start it now
    return study.result()
