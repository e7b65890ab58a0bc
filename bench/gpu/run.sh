#!/usr/bin/env bash
# The prepared GPU check (issue 12): on a machine with a CUDA GPU, in the repository root,
# after bench/gpu/prepare.sh built .gpu/ here and it travelled with the tree:
#   1. the smoke graph (`kedro run --env smoke --pipelines=sapo_full`) on the GPU with bf16
#      autocast, from the samples and item embeddings that prepare.sh wrote (SID catalog,
#      corpora, Stage 1, Stage 2, RL x3, baselines, evaluation);
#   2. bench/sft/run.py --device cuda (our SFT loop vs transformers' Trainer, bf16 variant);
#   3. bench/decoding/run.py --device cuda (beam search, sampling, step-wise beam search).
# Each step runs under its own time limit, so the whole check ends in about 5 minutes even if one
# hangs; writes $OUT/gpu_check.json (what ran, on which GPU, how long, the figures) and each
# bench's JSON beside it.
#   bash bench/gpu/run.sh                     # OUT defaults to bench/results/gpu
#   DEVICE=cpu QUICK=1 bash bench/gpu/run.sh  # a rehearsal on a CPU machine (tests do this)
set -uo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
OUT=${OUT:-bench/results/gpu}
GPU_DIR=${GPU_DIR:-.gpu}
DEVICE=${DEVICE:-cuda}
PY=${PY:-python3}
mkdir -p "$OUT"
export KEDRO_DISABLE_TELEMETRY=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONUNBUFFERED=1
if compgen -G "$GPU_DIR/wheels/*.whl" > /dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/sapo-site "$GPU_DIR"/wheels/*.whl || exit 1
  export PYTHONPATH=/tmp/sapo-site:$REPO/src
else
  export PYTHONPATH=$REPO/src${PYTHONPATH:+:$PYTHONPATH}
fi
[ -f "$GPU_DIR/smoke/04_feature/item_embeddings.npy" ] \
  || { echo "$GPU_DIR/smoke has no item embeddings: run bench/gpu/prepare.sh first" >&2; exit 1; }
"$PY" - "$DEVICE" > "$OUT/env.json" <<'PYEOF' || exit 1
import importlib, json, platform, sys
import torch
device = sys.argv[1]
if device == "cuda" and not torch.cuda.is_available():
    sys.exit(f"no CUDA device visible to torch {torch.__version__}: this check is for a GPU machine")
missing = [m for m in ("kedro", "kedro_datasets", "polars", "transformers", "accelerate", "peft",
                       "safetensors", "tokenizers", "matplotlib", "scipy")
           if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"missing Python packages {missing}: carry the wheels bench/gpu/prepare.sh builds")
env = {"device": device, "python": platform.python_version(), "torch": torch.__version__,
       **{m: importlib.import_module(m).__version__ for m in ("transformers", "accelerate",
                                                              "kedro", "polars")}}
if device == "cuda":
    p = torch.cuda.get_device_properties(0)
    env.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1),
               cuda=torch.version.cuda, bf16=torch.cuda.is_bf16_supported())
print(json.dumps(env))
PYEOF
cat "$OUT/env.json"

AUTOCAST=auto   # auto is off on CPU ("off" would reach Kedro as YAML false)
[ "$DEVICE" = cuda ] && AUTOCAST=bf16
DEV_TRAIN=cpu
[ "$DEVICE" = cuda ] && DEV_TRAIN=auto
params="run_root=$GPU_DIR/smoke"
for key in align.train reason.train grpo.rl sapo.rl rere.rl; do
  params+=",$key.device=$DEV_TRAIN,$key.autocast=$AUTOCAST"
done
params+=",evaluate.decoding.device=$DEVICE,sasrec.baseline.device=$DEVICE"
if [ -n "${QUICK:-}" ]; then
  SFT_ARGS=${SFT_ARGS:-"--examples 32 --batch-size 16 --repeats 1 --preset tiny --max-length 128"}
  DEC_ARGS=${DEC_ARGS:-"--prompts 4 --repeats 1 --items 300 --preset tiny --think-cap 4 --group 4 --stepwise-batch 4 --today-batch 2"}
else
  SFT_ARGS=${SFT_ARGS:-"--examples 1024 --repeats 2 --variants --threads 4"}
  DEC_ARGS=${DEC_ARGS:-"--prompts 64 --repeats 3 --threads 4"}
fi

status=0
step() {  # step NAME LIMIT_S CMD...: run with a time limit, record its wall time and exit code
  local name=$1 limit=$2; shift 2
  local t0; t0=$(date +%s%N)
  echo "== $name (limit ${limit}s): $*"
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  local ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  printf '{"step": "%s", "rc": %d, "wall_s": %d.%03d, "limit_s": %d}\n' "$name" "$rc" \
    $(( ms / 1000 )) $(( ms % 1000 )) "$limit" >> "$OUT/steps.jsonl"
  [ $rc -eq 0 ] || { status=1; echo "$name failed (rc $rc); the end of its log:"; tail -15 "$OUT/$name.log"; }
}
rm -f "$OUT/steps.jsonl"
step smoke "${SMOKE_LIMIT:-170}" "$PY" -m kedro run --env smoke --pipelines=sapo_full \
  --from-inputs=samples,item_embeddings --params "$params"
# shellcheck disable=SC2086
step bench_sft "${SFT_LIMIT:-75}" "$PY" bench/sft/run.py --device "$DEVICE" --out "$OUT/sft.json" $SFT_ARGS
# shellcheck disable=SC2086
step bench_decoding "${DEC_LIMIT:-75}" "$PY" bench/decoding/run.py --device "$DEVICE" --out "$OUT/decoding.json" $DEC_ARGS
"$PY" bench/gpu/summarise.py --out "$OUT" --run-root "$GPU_DIR/smoke" || status=1
exit $status
