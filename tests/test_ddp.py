"""Several processes: `torchrun --nproc_per_node=2 -m attrlib train ...` on the CPU (gloo), and the
distribution-aware sampler every rank draws its share of an epoch from."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

from attrlib import runfolder, sweep
from attrlib.config import Config
from attrlib.training.distributed import EpochSampler

from conftest import TINY_HELDOUT, train_in_fork


def test_the_epoch_sampler_deals_disjoint_shares_of_one_weighted_sample():
    weights = np.array([1.0] * 90 + [9.0] * 10)  # the last 10 rows: half of the mass
    shares = [EpochSampler(100, weights, seed=3, rank=r, world_size=3) for r in range(3)]
    for s in shares:
        s.set_epoch(5)
    drawn = [list(s) for s in shares]
    assert [len(d) for d in drawn] == [34, 34, 34] == [len(s) for s in shares]
    whole = shares[0].sample().tolist()  # the sample before it is dealt: 102 positions (padded from 100)
    assert sorted(sum(drawn, [])) == sorted(whole)  # disjoint positions, together the whole sample
    assert drawn[1] == whole[1::3]
    shares[0].set_epoch(6)
    assert list(shares[0]) != drawn[0]  # a new epoch, a new sample; the same (seed, epoch) gives the same one
    shares[0].set_epoch(5)
    assert list(shares[0]) == drawn[0]
    big = EpochSampler(20000, np.array([1.0] * 18000 + [9.0] * 2000), seed=0, rank=0, world_size=2)
    heavy = sum(1 for i in big if i >= 18000) / len(big)
    assert heavy == pytest.approx(0.5, abs=0.03)
    plain = [EpochSampler(10, None, seed=0, rank=r, world_size=2) for r in range(2)]
    assert sorted(list(plain[0]) + list(plain[1])) == list(range(10))  # a permutation, split in two


SCRIPT = """
import sys
from attrlib import sweep
from attrlib.config import Config
print(sweep.train(Config(data=sys.argv[1], runs=sys.argv[2], heldout=sys.argv[3], technique="weighted_sampling",
                          image_size=32, batch_size=8, steps=48, device="cpu", val_subclass="none"), progress=False))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(script_text: str, tiny_data, tmp_path, timeout: int = 120) -> subprocess.CompletedProcess:
    """`script_text` run by two CPU processes under torchrun with (data, runs folder, held-out subclass)."""
    script = tmp_path / "train.py"
    script.write_text(script_text)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                           f"--master_port={_free_port()}", str(script), str(tiny_data), str(tmp_path / "ddp"),
                           TINY_HELDOUT], env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _forked_ranks(config: Config, tmp_path, size: int = 2) -> str:
    """`sweep.train(config)` by `size` processes forked from this one, each given what torchrun gives a rank (RANK,
    LOCAL_RANK, WORLD_SIZE, MASTER_ADDR/PORT): the engine's multi-process path without torchrun's interpreters
    (three fresh imports of torch and attrlib, about 30 CPU s). Their stdout, concatenated (stderr is shown on a
    failure only: gloo may log a connection retry there)."""
    port = str(_free_port())
    ranks = []
    try:
        for r in range(size):
            ranks.append(train_in_fork(config, tmp_path / f"rank{r}.log", err=tmp_path / f"rank{r}.err",
                                       env={"RANK": str(r), "LOCAL_RANK": str(r), "WORLD_SIZE": str(size),
                                            "LOCAL_WORLD_SIZE": str(size), "MASTER_ADDR": "127.0.0.1",
                                            "MASTER_PORT": port}))
        for rank in ranks:
            rank.join(timeout=120)
        errors = "\n".join((tmp_path / f"rank{r}.err").read_text()[-3000:] for r in range(size))
        assert [rank.exitcode for rank in ranks] == [0] * size, errors
        return "".join((tmp_path / f"rank{r}.log").read_text() for r in range(size))
    finally:  # a rank left waiting on the others in gloo would hold this process at exit
        for rank in ranks:
            if rank.is_alive():
                rank.kill()
                rank.join()


@pytest.mark.parametrize("launch", ["fork", pytest.param("torchrun", marks=pytest.mark.slow)])
def test_two_cpu_processes_train_one_run(launch, tiny_data, tmp_path):
    """Two ranks (gloo) train one run together: forked from this process with torchrun's environment (CI), or
    started by torchrun itself (the slow tier: its own interpreters)."""
    config = Config(data=str(tiny_data), runs=str(tmp_path / "ddp"), heldout=TINY_HELDOUT, technique="weighted_sampling",
                    image_size=32, batch_size=8, steps=48, device="cpu", val_subclass="none")
    stdout = _torchrun(SCRIPT, tiny_data, tmp_path).stdout if launch == "torchrun" else _forked_ranks(config, tmp_path)
    run = runfolder.run_dir(config)
    # both ranks return the one run folder (torchrun's share a pipe and may interleave without a newline)
    assert stdout.count(str(run)) == 2 and not stdout.replace(str(run), "").split(), stdout
    assert [p.relative_to(tmp_path / "ddp") for p in (tmp_path / "ddp").glob("*/*")] == [run.relative_to(tmp_path / "ddp")]
    assert {p.name for p in run.iterdir()} == {"config.json", "history.jsonl", "checkpoint.pt", "predictions.csv", "trajectory.csv",
                                               "metrics.json", "train.log", "done"}
    metrics = json.loads((run / "metrics.json").read_text())
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert metrics["world_size"] == 2 and [h["epoch"] for h in history] == list(range(6))
    assert history[-1]["loss"] < history[0]["loss"]
    assert torch.load(run / "checkpoint.pt", weights_only=True)["epoch"] == 5

    # the same config in one process: the same steps of the same global batch (8 = 2 ranks x 4), other
    # random draws, so the accuracy is the same in expectation (tiny data: both well above chance)
    single = json.loads((sweep.train(config.replace(runs=str(tmp_path / "single")), progress=False)
                         / "metrics.json").read_text())
    chance = 1 / len(metrics["val"]["per_generator"])
    assert metrics["val"]["accuracy"] > 2 * chance, (metrics["val"]["accuracy"], single["val"]["accuracy"])
    assert metrics["val"]["accuracy"] > single["val"]["accuracy"] - 0.25


JTT_SCRIPT = """
import sys
from attrlib import sweep
from attrlib.config import Config
print(sweep.train(Config(data=sys.argv[1], runs=sys.argv[2], heldout=sys.argv[3], technique="jtt",
                          technique_params={"id_steps": 16}, image_size=32, batch_size=8, steps=16, device="cpu",
                          val_subclass="none"), progress=False))
"""


@pytest.mark.slow  # torchrun's path: the test above; jtt's identification run through the engine: test_dfr_jtt.py
def test_torchrun_trains_jtts_identification_model_as_a_run_of_its_own(tiny_data, tmp_path):
    """JTT's identification model is the baseline's run cut to id_steps: under torchrun both ranks train it
    together (the engine's multi-process path), then the final run from its errors."""
    _torchrun(JTT_SCRIPT, tiny_data, tmp_path, timeout=180)
    config = Config(data=str(tiny_data), runs=str(tmp_path / "ddp"), heldout=TINY_HELDOUT, technique="jtt",
                    technique_params={"id_steps": 16}, image_size=32, batch_size=8, steps=16, device="cpu",
                    val_subclass="none")
    identification = runfolder.run_dir(config.replace(technique="baseline", technique_params={}))
    for run in (identification, runfolder.run_dir(config)):
        assert (run / "done").exists() and json.loads((run / "metrics.json").read_text())["world_size"] == 2
    errors = torch.load(runfolder.run_dir(config) / "checkpoint.pt", weights_only=True)["technique"]["error_set"]
    assert 0 < int(errors.sum()) < len(errors)
