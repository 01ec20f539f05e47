"""Interruption: a training process killed with SIGKILL resumes to an uninterrupted run's results, and no
result file is ever half-written (a failed write leaves the previous file whole)."""
from __future__ import annotations

import errno
import json
import os
import signal
import time
from pathlib import Path

import pytest
import torch

import attrlib
from attrlib import io, runfolder, sweep, training
from attrlib.config import Config
from attrlib.errors import WriteError

from conftest import train_in_fork

TIMING = ("train_seconds", "train_images_per_second", "prepare_seconds", "device")


def _config(tiny_data, runs, epochs) -> Config:
    return Config(data=str(tiny_data), runs=str(runs), image_size=32, batch_size=8, steps=8 * epochs,
                  technique="group_dro", device="cpu", val_subclass="none")  # 8 steps per epoch


def _metrics(run: Path) -> dict:
    return {k: v for k, v in json.loads((run / "metrics.json").read_text()).items() if k not in TIMING}


def _history(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in ("seconds", "images_per_second")} for r in rows]


@pytest.mark.timeout(300)
def test_sigkill_then_the_same_command_resumes_to_identical_results(tiny_data, tmp_path, one_torch_thread, request):
    """A process training a run is killed with SIGKILL; the same call in another process resumes it to the results
    of an uninterrupted run (trained here, with one torch thread as theirs)."""
    epochs = 4
    config = _config(tiny_data, tmp_path / "cut", epochs)
    cut_proc = train_in_fork(config, tmp_path / "cut.log")
    request.addfinalizer(lambda: (cut_proc.kill(), cut_proc.join()))  # no child outlives a failed assertion
    run = runfolder.run_dir(config)
    ckpt = run / "checkpoint.pt"
    deadline = time.monotonic() + 60
    while not ckpt.exists() and cut_proc.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert ckpt.exists(), f"no checkpoint appeared: {(tmp_path / 'cut.log').read_text()[-2000:]}"
    os.kill(cut_proc.pid, signal.SIGKILL)
    cut_proc.join()
    assert cut_proc.exitcode == -signal.SIGKILL
    assert not (run / "done").exists(), "the run finished before it could be killed; give it more epochs"
    # whatever the moment of the kill, every file present is whole
    last = torch.load(ckpt, weights_only=True)["epoch"]
    assert 0 <= last < epochs - 1
    assert [h["epoch"] for h in _history(run)][: last + 1] == list(range(last + 1))
    json.loads((run / "config.json").read_text())

    again = train_in_fork(config, tmp_path / "again.log")
    request.addfinalizer(lambda: (again.kill(), again.join()))
    whole = sweep.train(_config(tiny_data, tmp_path / "whole", epochs), progress=False)  # beside the resumed one
    again.join(timeout=120)
    out = (tmp_path / "again.log").read_text()
    assert again.exitcode == 0, out[-2000:]
    assert Path(out.strip()) == run
    assert _metrics(run) == _metrics(whole)
    assert (run / "predictions.csv").read_bytes() == (whole / "predictions.csv").read_bytes()
    assert _history(run) == _history(whole)
    assert not list(run.glob(".*.tmp")), "temporary files of the killed process were left behind"


def test_every_result_write_goes_through_attrlib_io():
    """Audit: no module writes a file directly (open(..., 'w'), to_csv(path), savefig(path), torch.save(path))."""
    import re

    root = Path(attrlib.__file__).parent
    pattern = re.compile(r"open\([^)]*['\"][wa]b?['\"]|\.to_csv\(\s*[^f)]|savefig\(\s*[^b)]|torch\.save\(|"
                         r"\.write_text\(|\.write_bytes\(|np\.save\(|json\.dump\(")
    offenders = []
    for path in root.rglob("*.py"):
        # io.py is the one place that writes; synth.py fills a staging folder that replaces the benchmark whole
        if path.name == "io.py" or path.relative_to(root).as_posix() == "simulator/synth.py":
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line) and "atomic" not in line:
                offenders.append(f"{path.relative_to(root)}:{n}: {line.strip()}")
    assert not offenders, "write through attrlib.io instead:\n" + "\n".join(offenders)


@pytest.mark.parametrize("fail_at", ["write", "replace"])
def test_a_full_disk_leaves_the_previous_file_whole(tmp_path, monkeypatch, fail_at):
    target = tmp_path / "metrics.json"
    io.atomic_write_json(target, {"accuracy": 0.5})
    before = target.read_bytes()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    if fail_at == "replace":
        monkeypatch.setattr(io.os, "replace", full)
    else:
        monkeypatch.setattr(io.json, "dumps", lambda *a, **k: "x" * 10)  # something to write ...
        monkeypatch.setattr(io.os, "fsync", full)                     # ... that never reaches the disk
    with pytest.raises(WriteError, match=r"cannot write .*metrics\.json: no space left on the device") as err:
        io.atomic_write_json(target, {"accuracy": 0.9})
    assert err.value.errno == errno.ENOSPC and "intact" in str(err.value)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temporary left behind


def test_a_full_disk_during_a_run_keeps_the_finished_epochs(tiny_data, tmp_path, monkeypatch):
    config = _config(tiny_data, tmp_path, epochs=1)
    real_replace = os.replace

    def full_for_metrics(src, dst):
        if str(dst).endswith("metrics.json"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(io.os, "replace", full_for_metrics)
    with pytest.raises(WriteError, match="metrics.json: no space left"):
        sweep.train(config, progress=False)
    run = runfolder.run_dir(config)
    assert not (run / "metrics.json").exists() and not (run / "done").exists()
    assert torch.load(run / "checkpoint.pt", weights_only=True)["epoch"] == 0
    assert not list(run.glob(".*.tmp"))
    monkeypatch.setattr(io.os, "replace", real_replace)

    def no_training(*args, **kwargs):
        raise AssertionError("finished epochs were trained again")

    monkeypatch.setattr(training.engine, "train_one_epoch", no_training)
    assert (sweep.train(config, progress=False) / "done").exists()


@pytest.mark.timeout(300)  # the second asker waits on the first's lock: a child that hung must fail, not stall the suite
def test_two_processes_asking_for_one_run_train_it_once(tiny_data, tmp_path, capfd, one_torch_thread, request):
    """A parallel study's notebooks may ask for the same run at once (04, 06 and 07 all need the baseline):
    the first trains it under a lock, the second says it waits, then reuses the finished run. The first is a
    process of its own; the second is this one."""
    epochs = 6
    config = Config(data=str(tiny_data), runs=str(tmp_path), image_size=32, batch_size=8, steps=8 * epochs,
                    technique="baseline", device="cpu", val_subclass="none")
    run = runfolder.run_dir(config)
    first = train_in_fork(config, tmp_path / "first.log", progress=True)
    request.addfinalizer(lambda: (first.kill(), first.join()))  # whatever fails below, no child outlives the test
    deadline = time.monotonic() + 60
    while not (run / "config.json").exists() and first.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)  # config.json is written inside the lock, once training has begun
    assert (run / "config.json").exists(), (tmp_path / "first.log").read_text()[-2000:]
    capfd.readouterr()
    second = sweep.train(config, progress=True)
    out2, err2 = capfd.readouterr()
    first.join(timeout=180)
    out1 = (tmp_path / "first.log").read_text()
    assert first.exitcode == 0, out1[-2000:]
    assert Path(out1.strip().splitlines()[-1]) == run and second == run
    log = (run / runfolder.LOG).read_text().splitlines()  # the training lines: the run's, not the caller's output
    assert [line.split(" (")[0] for line in log] == [f"epoch {e}" for e in range(1, epochs + 1)]  # trained once
    assert log[-1].startswith(f"epoch {epochs} (step {8 * epochs}):")  # the first trained every epoch
    # it reached the run while the first still held it (had the first finished, it would just reuse the run)
    assert "another process is training" in err2 and "waiting to reuse it" in err2, \
        f"no wait: did the first finish before the second started? give it more epochs\n{err2[-2000:]}"
    assert "epoch 1" not in out2 + err2  # the second trained nothing (nor would a terminal show it here)
    assert len(_history(run)) == epochs


def test_train_many_trains_what_nobody_trains_before_waiting_on_a_locked_run(tiny_data, tmp_path):
    """A notebook beside another (a parallel study) asks for several runs, one of which the other is
    training: it trains the free ones first and only then waits for the locked one, instead of idling."""
    import threading

    common = dict(data=str(tiny_data), runs=str(tmp_path), image_size=32, batch_size=8, steps=8, device="cpu")
    held = runfolder.run_dir(Config(technique="baseline", seed=0, **common))
    free = runfolder.run_dir(Config(technique="group_dro", seed=0, **common))
    result = {}
    with io.exclusive_lock(held.parent / f".{held.name}.lock"):  # "another process" training the baseline
        worker = threading.Thread(target=lambda: result.update(sweep.train_many(
            ["baseline", "group_dro"], "quick", [0], progress=False, **common)))
        worker.start()
        deadline = time.monotonic() + 120
        while not (free / "done").exists() and worker.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (free / "done").exists(), "the free run was not trained while the other was locked"
        assert not (held / "done").exists() and worker.is_alive()  # passed over, then waited for
    worker.join(timeout=120)
    assert not worker.is_alive()
    assert result == {"baseline": [held], "group_dro": [free]} and (held / "done").exists()
    with io.exclusive_lock(held.parent / f".{held.name}.lock", blocking=False) as got:
        assert got  # released
    assert sweep.train(Config(technique="baseline", seed=0, **common), progress=False, wait=False) == held


def test_results_take_the_mode_of_any_new_file(tmp_path):
    """mkstemp makes owner-only files; a result must be as readable as any file the user creates."""
    mask = os.umask(0o022)
    os.umask(mask)
    path = io.atomic_write_text(tmp_path / "table.md", "| a |\n")
    assert (path.stat().st_mode & 0o777) == (0o666 & ~mask)
