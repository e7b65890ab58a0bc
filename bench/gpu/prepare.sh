#!/usr/bin/env bash
# Here, on the CPU machine with the project's .venv: build .gpu/ (git-ignored), what
# bench/gpu/run.sh needs on a bare GPU machine that has PyTorch, transformers, accelerate and peft
# but neither Kedro nor polars, and reaches no package registry:
#   .gpu/wheels/  wheels of the packages such an image lacks, at this .venv's versions
#   .gpu/smoke/   the smoke graph's run root up to the item embeddings, so that the
#                 sentence-embedding model (88 MB) need not travel; run.sh goes on from there
# Then carry `.gpu` to the GPU machine and run `bash bench/gpu/run.sh` there.
#   bash bench/gpu/prepare.sh      # ~1 min; fails where tree + .gpu/ would not travel (64 MiB)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
DEST=${DEST:-.gpu}
# The device tool carries at most 64 MiB: the tree (tracked and untracked-not-ignored files) + .gpu
TREE_KIB=$(git ls-files -z -co --exclude-standard | du -ck --files0-from=- 2>/dev/null | tail -1 | cut -f1)
LIMIT_MIB=${GPU_CARRY_MIB:-$(( 63 - TREE_KIB / 1024 ))}
# What the GPU image lacks (its package list, device README, read 2026-11): Kedro and its
# dependencies, kedro-datasets, polars.
MISSING="kedro kedro-datasets kedro-telemetry polars polars-runtime-32 cookiecutter dynaconf
GitPython gitdb smmap more-itertools omegaconf antlr4-python3-runtime parse tomli_w binaryornot
arrow python-slugify text-unidecode lazy-loader"

export KEDRO_DISABLE_TELEMETRY=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
rm -rf "$DEST"
mkdir -p "$DEST/wheels"
if [ "${WHEELS:-1}" = 1 ]; then  # WHEELS=0: the smoke inputs only (a rehearsal where Kedro is)
  # shellcheck disable=SC2086
  pins=$("$PY" -c 'import importlib.metadata as m, sys; print(" ".join(
    f"{n}=={m.version(n)}" for n in sys.argv[1:]))' $MISSING)
  # shellcheck disable=SC2086
  "$PY" -m pip wheel -q --no-deps --wheel-dir "$DEST/wheels" $pins 2> >(grep -v "is ignored: it is neither" >&2)
fi
# the nodes not downstream of samples and item_embeddings: ingestion, then the text embeddings
for sel in "--pipelines=ingest" "--pipelines=sid_catalog --nodes=embed_items"; do
  # shellcheck disable=SC2086
  "$PY" -m kedro run --env smoke $sel --params "run_root=$DEST/smoke" >> "$DEST/prepare.log" 2>&1 \
    || { tail -30 "$DEST/prepare.log"; exit 1; }
done
size=$(du -sm "$DEST" | cut -f1)
echo "$DEST: $(ls "$DEST/wheels" | wc -l) wheels, the smoke run root up to item_embeddings," \
  "${size} MiB (at most ${LIMIT_MIB} beside the tree's $(( TREE_KIB / 1024 )) MiB)"
if [ "$size" -gt "$LIMIT_MIB" ]; then
  echo "$DEST is ${size} MiB, over the ${LIMIT_MIB} MiB that may travel with the tree" >&2
  exit 1
fi
