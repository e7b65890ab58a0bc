"""Two CPU processes (gloo, torchrun on 127.0.0.1) train like one process on the same global batch.

Measured on this machine: the two ranks end bit-identical; against one process with batch 4 x
grad_accum 2 the weights agree exactly (same micro-batches, same summation), against one process
with batch 8 to 2.7e-6 (float summation order). Tolerances below leave ~4x headroom.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import sft_setup
import torch
from safetensors.torch import load_file

from sapo_pipeline.model.sft import train_sft
from sapo_pipeline.model.sft_state import csv_to_log
from sapo_pipeline.training.workdir import trainable_state

HERE = Path(__file__).resolve().parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _max_diff(a, b) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "KEDRO_DISABLE_TELEMETRY": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
           str(HERE / "sft_ddp_worker.py"), str(out), "4", "1"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"torchrun failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n"
                             f"{proc.stderr[-4000:]}")
    return out


def test_two_processes_end_with_identical_weights(ddp_run):
    r0, r1 = (load_file(str(ddp_run / f"rank{r}.safetensors")) for r in (0, 1))
    assert _max_diff(r0, r1) == 0.0


# (8, 1): one micro-batch of 8 is padded to another width than two of 4, so sums run in another
# order; the drift after training depends on the CPU's kernels (measured 1.2e-5 on one machine,
# under 1e-5 on another), hence 3e-5 there.
@pytest.mark.parametrize(("batch", "accum", "atol"), [(4, 2, 1e-6), (8, 1, 3e-5)])
def test_two_processes_match_one_process_on_the_same_global_batch(ddp_run, tmp_path, batch,
                                                                  accum, atol):
    torch.set_num_threads(1)
    setup = sft_setup.tiny_setup()
    cfg = sft_setup.train_config(tmp_path / "single", batch_size=batch, grad_accum=accum)
    single = train_sft(setup.new_model(), setup.train, setup.valid, cfg, pad_id=setup.pad_id,
                       stage="ddp")
    assert single.summary["global_batch"] == 8
    ddp = load_file(str(ddp_run / "rank0.safetensors"))
    assert _max_diff(trainable_state(single.model), ddp) <= atol
    ddp_log = csv_to_log((ddp_run / "log.csv").read_text(encoding="utf-8"))
    assert [r["step"] for r in ddp_log] == [r["step"] for r in single.log]
    for a, b in zip(single.log, ddp_log):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)
        if a["valid_loss"] is not None:
            assert b["valid_loss"] == pytest.approx(a["valid_loss"], rel=1e-5)
