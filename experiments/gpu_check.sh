#!/usr/bin/env bash
# Issue 17's GPU path: the CPU figures of bench_original.py and benchmark.py, on CUDA, in one call
# of the device tool (about 5 minutes; a lent machine is bare and offline).
#
#   bash experiments/gpu_check.sh prepare ORIGINAL   # here, once
#   bash experiments/gpu_check.sh                    # there: the device tool's run, carry [".gpu"]
#
# prepare fills .gpu/ (git-ignored through .git/info/exclude) with what the device image lacks: the
# pure-Python packages hydra-core, its joblib launcher, omegaconf and antlr4, copied from this
# venv, and a copy of ORIGINAL, a checkout of SAMPL-Weizmann/DeepCut (the search tool's fetch).
# The device image has torch, torch_geometric, timm, pandas and scikit-image. Results land in
# $OUT (the device tool brings them back), else outputs/gpu_check/.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" == prepare ]]; then
  original=${2:?usage: gpu_check.sh prepare PATH_TO_ORIGINAL_CHECKOUT}
  site=$(python -c "import omegaconf, pathlib; print(pathlib.Path(omegaconf.__file__).parents[1])")
  rm -rf .gpu && mkdir -p .gpu/site
  for package in hydra omegaconf antlr4 hydra_plugins/hydra_joblib_launcher; do  # config.yaml's launcher is joblib
    mkdir -p ".gpu/site/$(dirname $package)" && cp -r "$site/$package" ".gpu/site/$package"
  done
  cp -r "$original" .gpu/original && rm -rf .gpu/original/.git
  grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo /.gpu/ >> .git/info/exclude
  du -sh .gpu
  exit
fi
out=${OUT:-outputs/gpu_check}
mkdir -p "$out"
export PYTHONPATH=$PWD/.gpu/site:$PWD PYTHONUNBUFFERED=1
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.__version__, torch.cuda.get_device_name())"
# The original needs minutes per image at N = 4761 on a CPU, seconds on a GPU: three rounds there.
# Each step under its own limit, the second run even if the first fails: one call should bring back
# all it can.
status=0
timeout 330 python3 experiments/bench_original.py --original .gpu/original --device cuda --threads 4 \
  --strides 8,4 --repeats 5 --large-repeats 3 --out "$out/bench_original" 2>&1 | tee "$out/bench_original.log" || status=$?
timeout 200 python3 experiments/benchmark.py device=cuda --out "$out/benchmark" 2>&1 | tee "$out/benchmark.log" || status=$?
exit $status
