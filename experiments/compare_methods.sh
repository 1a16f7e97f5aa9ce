#!/usr/bin/env bash
# Every method on identical features, on SOD-, VOC- and COCO-style data, three seeds where a method
# is random. Usage: experiments/compare_methods.sh DATA OUT [extra overrides...]
#   DATA holds sod/ (images/, masks/), VOCdevkit/VOC2012/ and coco/ (train2017/, annotations/).
# Then: python -m deepcut.tables OUT --out OUT/tables
set -euo pipefail
data=$(realpath "$1"); out=$2; shift 2
cd "$(dirname "$0")/.."
datasets=("dataset=sod dataset.root=$data/sod"
          "dataset=voc12 dataset.root=$data"
          "dataset=coco20k dataset.root=$data/coco dataset.filenames=null")
for d in "${datasets[@]}"; do
  name=${d%% *}; name=${name#dataset=}
  # shellcheck disable=SC2086
  python run.py -m $d method=whole,tokencut,lost,dsm,kmeans hydra.sweep.dir="$out/$name/peers" "$@"
  python run.py -m $d method=deepcut seed=0,1,2 hydra.sweep.dir="$out/$name/deepcut" "$@"
  python run.py -m $d experiment=base/paper backbone=dinov2_vits14_offline method=deepcut seed=0,1,2 hydra.sweep.dir="$out/$name/paper_recipe" "$@"
done
