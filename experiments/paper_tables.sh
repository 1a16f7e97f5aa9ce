#!/usr/bin/env bash
# Tables 1 and 2 from real runs: every method on identical (cached) features, with and without the
# bilateral solver (+BS), seeds 0,1,2 for the random ones, on ECSSD, DUTS-TE, VOC07, VOC12, COCO and
# CUB (boxes: CorLoc); then the tables (experiments/make_tables.py).
#   experiments/paper_tables.sh DATA OUT [extra overrides...]
# DATA holds ECSSD/, DUTS-TE/, VOCdevkit/VOC2007/, VOCdevkit/VOC2012/, coco/ (train2017/ +
# annotations/) and CUB/ in their official layouts (datasets/*/README.md). LIMIT=N runs the first N
# images of each data set (ids sorted; VOC07/VOC12 are small here and always run whole), for a
# machine too small for the full sets; unset = every image. VOC07 uses trainval+test (the dev copy
# holds 4 images). DATASETS="ecssd duts_te" runs only those. Writes OUT/<dataset>/<group>/<job>/ and OUT/tables/; launcher=basic runs jobs in
# turn in one process (give launcher=joblib or launcher=slurm to spread them).
set -euo pipefail
data=$(realpath "$1"); out=$2; shift 2
cd "$(dirname "$0")/.."
limit=${LIMIT:+dataset.limit=$LIMIT}
limit=${limit:-dataset.limit=null}
datasets=("ecssd dataset=ecssd dataset.root=$data/ECSSD $limit"
          "duts_te dataset=duts_te dataset.root=$data/DUTS-TE $limit"
          "voc07 dataset=voc07 dataset.root=$data dataset.split=trainval+test"
          "voc12 dataset=voc12 dataset.root=$data"
          "coco dataset=coco20k dataset.root=$data/coco dataset.filenames=null $limit"
          "cub dataset=cub dataset.root=$data/CUB $limit")
common=(launcher=basic save_overlays=false)
for d in "${datasets[@]}"; do
  read -r name args <<< "$d"
  [[ " ${DATASETS:-$name} " == *" $name "* ]] || continue
  # A failed job is listed with its error.txt; the other sweeps still run.
  # shellcheck disable=SC2086
  run() { python run.py -m $args "${common[@]}" hydra.sweep.dir="$out/$name/$1" "${@:2}" "${EXTRA[@]}" \
            || echo "sweep $name/$1 had failed jobs (see their error.txt)" >&2; }
  EXTRA=("$@")
  run peers method=whole,tokencut,lost,dsm,kmeans postprocess.bilateral=false,true
  run deepcut_ncut method=deepcut seed=0,1,2 postprocess.bilateral=false,true
  run deepcut_cc method=deepcut loss=cc seed=0,1,2 postprocess.bilateral=false,true
  run paper_recipe method=deepcut graph=paper optimizer=paper seed=0,1,2 postprocess.bilateral=false,true
done
python experiments/make_tables.py "$out" --out "$out/tables"
