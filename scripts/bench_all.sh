#!/usr/bin/env bash
# Quick versions of every benchmark, numbers printed (no pass/fail); `make bench` runs this.
# Goals and measured numbers: docs/BENCHMARKS.md.
#
#   bash scripts/bench_all.sh                       # about 1 minute on 2 cores (10000 px pipeline)
#   BENCH_PIPELINE_SIZE=20000 bash scripts/bench_all.sh   # builds a 2 GB raster once
#
# BENCH_WORKDIR (default /tmp/paligemma_bench) caches the pipeline's test rasters; delete it when done.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
SIZE="${BENCH_PIPELINE_SIZE:-10000}"
WORKDIR="${BENCH_WORKDIR:-/tmp/paligemma_bench}"

section() { printf '\n=== %s\n' "$*"; }

section "machine: $(nproc) CPU cores, $(uptime | sed 's/.*load average/load average/')"
"$PY" - <<'EOF'
import torch
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
print(f"torch {torch.__version__}, GPU: {gpu}")
EOF

section "mask codec (scripts/bench_codec.py; goal: decode >= 200 masks/s on 2 CPU cores)"
"$PY" scripts/bench_codec.py --seconds 0.5 --batches 1,64,512

section "water index vs GDAL chain vs read floor, ${SIZE} px (scripts/bench_pipeline.py; goals: tool/floor <= 3, tool/GDAL <= 0.75)"
if command -v gdal_calc.py >/dev/null && command -v gdal_polygonize.py >/dev/null; then
  "$PY" scripts/bench_pipeline.py --sizes "$SIZE" --rounds 1 --workdir "$WORKDIR"
else
  echo "skipped: gdal_calc.py / gdal_polygonize.py not installed (Debian: gdal-bin)"
fi

section "mosaic + vectoriser (scripts/bench_mosaic.py)"
"$PY" scripts/bench_mosaic.py --sizes 2500 10000

section "run journal: JSON + WKB records with keyed checks (scripts/bench_journal.py)"
"$PY" scripts/bench_journal.py

section "PaliGemma engine, tiny random model on CPU (scripts/bench_gpu.py --tiny)"
"$PY" scripts/bench_gpu.py --tiny --threads 1 2> >(grep -v -e 'Writing model shards' -e 'Loading weights' >&2)

printf '\nDone. The pipeline rasters stay cached in %s (rm -rf it to free the disk).\n' "$WORKDIR"
