#!/usr/bin/env bash
# Issue 16: the sweeps that chose DeepCut's default post-processing and restart count, on the
# development data only, with run.py's own -m grid (launcher=basic: one job after another).
#   experiments/default_sweep.sh DATA OUT
# DATA holds ECSSD/, DUTS-TE/, sod/, VOCdevkit/VOC2012/ and coco/ (../shared/data layouts).
# Objective, stated before the runs: the mean of ECSSD and DUTS-TE mIoU; CorLoc on VOC12 and COCO
# must not drop; SOD is held out (never used to choose). Selection runs on ECSSD (all) and DUTS-TE
# shard 0 of 4 (a fixed hash split by image id); stage 4 confirms on all of DUTS-TE, SOD, VOC12 and COCO.
# Tables: python experiments/make_tables.py OUT/<stage> (pools seeds into mean ± std).
set -euo pipefail
data=$(realpath "$1"); out=$2
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}   # one thread per job: jobs on a shared machine do not spin
common=(launcher=basic save_overlays=false save_labels=false)
ecssd=(dataset=ecssd dataset.root="$data/ECSSD")
duts_sel=(dataset=duts_te dataset.root="$data/DUTS-TE" dataset.num_shards=4 dataset.shard=0)
tokencut_bs=(postprocess.bilateral_params.sigma_spatial=16 postprocess.bilateral_params.sigma_luma=16
             postprocess.bilateral_params.sigma_chroma=8 postprocess.bilateral_params.lam=128)
sweep() { local dir=$1; shift; python run.py -m "$@" "${common[@]}" hydra.sweep.dir="$out/$dir"; }

# 1. Refinement: nearest vs bilinear upsampling, bilateral solver off/on.
for d in ecssd duts_sel; do
  declare -n ds=$d
  sweep 1_refine/$d "${ds[@]}" postprocess.upsample=nearest,bilinear postprocess.bilateral=false,true
done
# 2. The solver's settings (DeepCut's released 24/4/4/256 vs TokenCut's 16/16/8/128) and the largest
#    component, for DeepCut and every peer.
sweep 2_solver/ecssd "${ecssd[@]}" postprocess.bilateral=true postprocess.largest_component=false,true
sweep 2_solver/ecssd_tokencut "${ecssd[@]}" postprocess.bilateral=true "${tokencut_bs[@]}" postprocess.largest_component=false,true
sweep 2_solver/ecssd_peers "${ecssd[@]}" postprocess.bilateral=true method=lost,tokencut,dsm,kmeans postprocess.largest_component=false,true
# 3. Restarts with the solver on: 4 and 16 over seeds 0, 1, 2.
for d in ecssd duts_sel; do
  declare -n ds=$d
  sweep 3_restarts/$d "${ds[@]}" postprocess.bilateral=true optimizer.restarts=4,16 seed=0,1,2
done
# 4. Confirmation: the new default (configs) against today's default and every peer given the
#    same refinement, on all of DUTS-TE, ECSSD, SOD (held out), VOC12 and COCO.
old=(postprocess.bilateral=false optimizer.restarts=16)
for spec in "ecssd ${ecssd[*]}" "duts_te dataset=duts_te dataset.root=$data/DUTS-TE" "sod dataset=sod dataset.root=$data/sod" \
            "voc12 dataset=voc12 dataset.root=$data" "coco dataset=coco20k dataset.root=$data/coco dataset.filenames=null"; do
  read -r name args <<< "$spec"
  # shellcheck disable=SC2086
  sweep 4_confirm/$name/new $args seed=0,1,2
  # shellcheck disable=SC2086
  sweep 4_confirm/$name/old $args "${old[@]}" seed=0,1,2
  # shellcheck disable=SC2086
  sweep 4_confirm/$name/peers $args method=lost,tokencut,dsm,kmeans
done
