"""Two CPU processes (gloo, torchrun on 127.0.0.1) run the RL loop like one process.

Each process samples whole groups for its share of the step's prompts; the loss divides by the
minibatch's global denominator. With a rollout source whose samples do not depend on the
sharding (``ToySource(seed_by_prompt=True)``), two processes with 2 prompts each must train like
one process with the 4 prompts, up to float summation order (measured: max weight difference
3.5e-6 for SAPO, 1.1e-5 for GRPO after 6 Adam steps at lr 0.02; the two ranks end bit-identical;
the logged loss and grad norm, which a wrong global denominator would scale, agree to 1e-4
relative). This file is also the worker:
``python -m torch.distributed.run --nproc_per_node 2 tests/test_rl_ddp.py OUT MODE``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from rl_fakes import ToySource, tiny_model, toy_prompts, toy_trie
from safetensors.torch import load_file, save_file

from sapo_pipeline.rl.config import GRPOConfig, SAPOConfig
from sapo_pipeline.rl.diagnostics import csv_to_log, log_to_csv
from sapo_pipeline.rl.trainer import train_rl
from sapo_pipeline.training.workdir import trainable_state

HERE = Path(__file__).resolve().parent

MODES = {"sapo": SAPOConfig, "grpo": GRPOConfig}  # step vs token aggregation


def _cfg(mode: str, work: Path):
    return MODES[mode](steps=3, prompts_per_step=4, group_size=4, lr=0.02, beta=0.05,
                       ppo_epochs=2, device="cpu", work_dir=str(work), progress_bar=False,
                       checkpoint_every=0, num_threads=1)


def _run(mode: str, work: Path):
    torch.set_num_threads(1)
    return train_rl(tiny_model(), toy_prompts(8), ToySource(toy_trie(), seed_by_prompt=True),
                    _cfg(mode, work))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("rl_ddp")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "KEDRO_DISABLE_TELEMETRY": "1",
           "PYTHONPATH": os.pathsep.join([str(HERE.parent / "src"), str(HERE),
                                          os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
           str(Path(__file__).resolve()), str(out), ",".join(MODES)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"torchrun failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n"
                             f"{proc.stderr[-4000:]}")
    return out


@pytest.mark.parametrize("mode", list(MODES))
def test_two_processes_train_like_one(ddp_runs, tmp_path, mode):
    r0 = load_file(str(ddp_runs / f"{mode}_rank0.safetensors"))
    r1 = load_file(str(ddp_runs / f"{mode}_rank1.safetensors"))
    assert all(torch.equal(r0[k], r1[k]) for k in r0)
    single = _run(mode, tmp_path / "single")
    one = trainable_state(single.model)
    diff = max(float((one[k] - r0[k]).abs().max()) for k in one)
    print(f"{mode}: max |one process - two processes| = {diff:.3g}")
    assert diff <= 1e-4, diff
    ddp_log = csv_to_log((ddp_runs / f"{mode}_log.csv").read_text(encoding="utf-8"))
    assert len(ddp_log) == len(single.log) == 3
    for a, b in zip(single.log, ddp_log):
        assert b["response_tokens"] == a["response_tokens"]  # global sums, not one rank's
        for k in ("reward", "reward_step1", "zero_var_step2", "adv_std_step3"):
            assert b[k] == pytest.approx(a[k], rel=1e-6, abs=1e-9), k
        for k in ("loss", "kl", "grad_norm", "entropy"):
            assert b[k] == pytest.approx(a[k], rel=1e-4, abs=1e-7), k


def _worker() -> None:
    out, modes = Path(sys.argv[1]), sys.argv[2].split(",")
    rank = int(os.environ.get("RANK", "0"))
    for mode in modes:
        result = _run(mode, out / f"work_{mode}")
        save_file(trainable_state(result.model), str(out / f"{mode}_rank{rank}.safetensors"))
        if rank == 0:
            (out / f"{mode}_log.csv").write_text(log_to_csv(result.log), encoding="utf-8")


if __name__ == "__main__":
    _worker()
