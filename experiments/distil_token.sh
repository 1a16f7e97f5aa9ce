#!/usr/bin/env bash
# Issue 29's recipe, seeds 0-2: the default's masks of the dev DUTS-TE images made without the solver
# (ground truth unread), a head trained on them over the last block's uncentred tokens
# (experiment=head_token), evaluated on ECSSD, SOD, VOC12 and COCO with the solver at 256 px (the
# recipe), 320 and 192 px.
#   experiments/distil_token.sh SHARED_DATA OUT
# Writes OUT/teacher_s<seed>/, OUT/head_s<seed>/ and OUT/<set>/ms<side>_s<seed>/; a complete run is
# skipped. Table: python -m deepcut.tables OUT/<set> (a row per seed: each seed has its own head).
set -euo pipefail
{ # read whole before running: an edit made during a long sweep cannot change the rest of it
data=$(realpath "$1"); out=$2
cd "$(dirname "$0")/.."
train=(dataset=duts_te dataset.root="$data/DUTS-TE" save_overlays=false)
declare -A sets=(
  [ecssd]="dataset=ecssd dataset.root=$data/ECSSD"
  [sod]="dataset=sod dataset.root=$data/sod"
  [voc12]="dataset=voc12 dataset.root=$data"
  [coco]="dataset=coco20k dataset.root=$data/coco dataset.filenames=null"
)
done_run() { grep -qs '"complete": true' "$1/summary.json"; }
run() { local dir=$1; shift; done_run "$dir" && return 0; mkdir -p "$(dirname "$dir")"
        python run.py "$@" hydra.run.dir="$dir" > "$dir.log" 2>&1 || echo "failed: see $dir.log" >&2; }
for seed in 0 1 2; do
  run "$out/teacher_s$seed" task=distil "${train[@]}" postprocess.bilateral=false seed="$seed"
  run "$out/head_s$seed" task=distil "${train[@]}" experiment=head_token task.teacher_dir="$out/teacher_s$seed" seed="$seed"
  for set in ecssd sod voc12 coco; do
    for side in 256 320 192; do
      # shellcheck disable=SC2086
      run "$out/$set/ms${side}_s$seed" ${sets[$set]} method=head experiment=head_token method.checkpoint="$out/head_s$seed/head.pt" \
        postprocess.bilateral_params.max_side=$side seed="$seed" save_overlays=false save_labels=false
    done
  done
done
exit
}
