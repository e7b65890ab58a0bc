"""One process of the two-process SFT test (tests/test_sft_ddp.py), launched by torchrun.

Usage: ``python -m torch.distributed.run --nproc_per_node 2 tests/sft_ddp_worker.py OUT BATCH ACCUM``
Trains the tiny model on the tiny corpus and writes ``OUT/rank<r>.safetensors`` (final weights)
and, from rank 0, ``OUT/log.csv``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "src"), str(HERE)]

import sft_setup  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from sapo_pipeline.model.sft import train_sft  # noqa: E402
from sapo_pipeline.model.sft_state import log_to_csv  # noqa: E402
from sapo_pipeline.training.workdir import trainable_state  # noqa: E402


def main() -> None:
    out, batch, accum = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(1)
    setup = sft_setup.tiny_setup()
    model = setup.new_model()
    cfg = sft_setup.train_config(out / "work", batch_size=batch, grad_accum=accum)
    result = train_sft(model, setup.train, setup.valid, cfg, pad_id=setup.pad_id, stage="ddp")
    rank = int(os.environ.get("RANK", "0"))
    save_file(trainable_state(result.model), str(out / f"rank{rank}.safetensors"))
    if rank == 0:
        (out / "log.csv").write_text(log_to_csv(result.log), encoding="utf-8")


if __name__ == "__main__":
    main()
