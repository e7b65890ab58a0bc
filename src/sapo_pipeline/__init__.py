"""sapo-pipeline: reasoning-based generative recommendation with Step-Aligned Policy Optimization."""

import os as _os

# Everything this project runs is offline and sends no telemetry. Set before any Hugging Face
# module is imported (they read these at import time); an explicit user setting wins.
for _var in ("KEDRO_DISABLE_TELEMETRY", "DVC_NO_ANALYTICS", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
    _os.environ.setdefault(_var, "1")
_os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

__version__ = "0.1.0"
