#!/usr/bin/env bash
# The GPU check of sklearn-clipdet: CUDA tests and both benchmarks on one GPU, in one run.
#
# Two steps (see benchmarks/README.md):
#
#   bash benchmarks/gpu_check.sh prepare
#       On the development machine, from the repository root: fills the git-ignored folder
#       .gpu-carry/ with the wheels the GPU machine lacks (open_clip_torch, ftfy, wcwidth,
#       skorch; pure Python, fetched with pip download) and a copy of the playground images.
#
#   bash benchmarks/gpu_check.sh
#       On the GPU machine (the device tool's `run`, carry [".gpu-carry"], timeout_s 600):
#       installs the wheels into /tmp/site, runs the tests marked `cuda`, then
#       bench_featurizer.py (ViT-L-14 fp16, batch 256, 1024 playground paths cycled; with the
#       views section: the default detector's resize+tiles features) and
#       bench_classifier.py (100k x 1536) with --device cuda. Everything printed is also
#       written to $OUT (the device tool brings it back). About 4-6 minutes.
set -uo pipefail
cd "$(dirname "$0")/.."
CARRY=.gpu-carry
PLAYGROUND=../shared/data/playground
PYTHON=${PYTHON:-python3}

if [ "${1:-}" = "prepare" ]; then
    set -e
    rm -rf "$CARRY" && mkdir -p "$CARRY/wheels"
    "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
        -d "$CARRY/wheels" open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth==0.9.4 skorch==1.4.0
    cp -r "$PLAYGROUND" "$CARRY/playground"
    du -sh "$CARRY"
    exit 0
fi

OUT=${OUT:-/tmp/gpu-check-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
log() { echo "== $* ==" | tee -a "$OUT/summary.txt"; }

log "setup"
export PYTHONPATH="$PWD"
if [ -d "$CARRY/wheels" ]; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site "$CARRY"/wheels/*.whl || exit 1
    export PYTHONPATH="/tmp/site:$PWD"
fi
# Tests and benchmarks read the playground from ../shared/data/playground.
if [ ! -e "$PLAYGROUND" ] && [ -d "$CARRY/playground" ]; then
    mkdir -p "$(dirname "$PLAYGROUND")" && ln -s "$PWD/$CARRY/playground" "$PLAYGROUND"
fi
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; nproc
  "$PYTHON" -c "import torch, torchvision, open_clip, PIL; print('torch', torch.__version__, \
'torchvision', torchvision.__version__, 'open_clip', open_clip.__version__, 'pillow', \
PIL.__version__, 'cuda', torch.cuda.is_available())"; } 2>&1 | tee "$OUT/env.txt"

log "tests marked cuda"
timeout 180 "$PYTHON" -m pytest -q -m cuda -p no:cacheprovider --continue-on-collection-errors \
    -rs tests 2>&1 | tee "$OUT/cuda_tests.txt"
echo "exit status ${PIPESTATUS[0]}" | tee -a "$OUT/summary.txt"

log "bench_featurizer: ViT-L-14 fp16, batch 256, 1024 JPEG paths"
timeout 300 "$PYTHON" benchmarks/bench_featurizer.py --device cuda --precision fp16 \
    --model ViT-L-14 --batch-size 256 --n-images 1024 --repeats 2 \
    --only e2e,cosine,decode,text,views 2>&1 | tee "$OUT/bench_featurizer.txt"
echo "exit status ${PIPESTATUS[0]}" | tee -a "$OUT/summary.txt"

log "bench_classifier: 100k x 1536"
timeout 150 "$PYTHON" benchmarks/bench_classifier.py --device cuda --n-samples 100000 2>&1 \
    | tee "$OUT/bench_classifier.txt"
echo "exit status ${PIPESTATUS[0]}" | tee -a "$OUT/summary.txt"
grep -h -E "ratio|cosine|img/s|captions/s|passed|failed|error" "$OUT"/cuda_tests.txt \
    "$OUT"/bench_*.txt >> "$OUT/summary.txt"
