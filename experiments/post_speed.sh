#!/usr/bin/env bash
# Issue 25: the bilateral solver's working resolution and the restart count, chosen on the
# development data with run.py's own -m grid (launcher=basic: one job after another).
#   experiments/post_speed.sh DATA OUT
# DATA holds ECSSD/, DUTS-TE/, sod/, VOCdevkit/VOC2012/ and coco/ (../shared/data layouts).
# 1. postprocess.bilateral_params.max_side = null (the image's own size: the solver as it was),
#    320 and 256, seeds 0-2, on ECSSD, DUTS-TE shard 0 of 4, SOD, VOC12 and COCO. The rule, stated
#    before the runs: the smallest side whose mean mIoU (CorLoc on VOC12/COCO) stays within the seed
#    spread (one std over seeds 0-2) of the full-size solver on every set.
# 2. optimizer.restarts = 4, 8, 16 with the chosen post-processing on SOD and DUTS-TE shard 0, seeds 0-2.
# Timing is not read from these runs (one thread, a shared machine): see experiments/benchmark.py.
# Tables: python -m deepcut.tables OUT/<stage> (pools seeds into mean ± std).
# A part of it: SETS="sod coco" (names below), MAX_SIDES=null,320, STAGES=1 (or 2); RESTARTS=4,8,16.
set -euo pipefail
{ # read whole before running, so an edit during a long sweep cannot change the rest of it
data=$(realpath "$1"); out=$2
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}   # one thread per job: jobs on a shared machine do not spin
common=(launcher=basic save_overlays=false save_labels=false)
sweep() { local dir=$1; shift; python run.py -m "$@" "${common[@]}" hydra.sweep.dir="$out/$dir"; }
sets=("ecssd dataset=ecssd dataset.root=$data/ECSSD"
      "duts_sel dataset=duts_te dataset.root=$data/DUTS-TE dataset.num_shards=4 dataset.shard=0"
      "sod dataset=sod dataset.root=$data/sod"
      "voc12 dataset=voc12 dataset.root=$data"
      "coco dataset=coco20k dataset.root=$data/coco dataset.filenames=null")
chosen() { local name=${1%% *}; [[ " ${SETS:-ecssd duts_sel sod voc12 coco} " == *" $name "* ]]; }
if [[ ${STAGES:-1 2} == *1* ]]; then
  for spec in "${sets[@]}"; do
    chosen "$spec" || continue
    read -r name args <<< "$spec"
    # shellcheck disable=SC2086
    sweep 1_max_side/$name $args postprocess.bilateral_params.max_side=${MAX_SIDES:-null,320,256} seed=0,1,2
  done
fi
if [[ ${STAGES:-1 2} == *2* ]]; then
  for spec in "${sets[2]}" "${sets[1]}"; do
    chosen "$spec" || continue
    read -r name args <<< "$spec"
    # shellcheck disable=SC2086
    sweep 2_restarts/$name $args optimizer.restarts=${RESTARTS:-4,8,16} seed=0,1,2
  done
fi
exit
}
