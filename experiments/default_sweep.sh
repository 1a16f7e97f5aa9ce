#!/usr/bin/env bash
# Issue 16: the sweeps that chose DeepCut's default post-processing and restart count, on the
# development data only, with run.py's own -m grid (launcher=basic: one job after another).
#   experiments/default_sweep.sh DATA OUT
# DATA holds ECSSD/, DUTS-TE/, sod/, VOCdevkit/VOC2012/ and coco/ (../shared/data layouts).
# Objective, stated before the runs: the mean of ECSSD and DUTS-TE mIoU; CorLoc on VOC12 and COCO
# must not drop; SOD is held out (never used to choose). Selection runs on ECSSD (all) and DUTS-TE
# shard 0 of 4 (a fixed hash split by image id); stage 4 confirms on all of DUTS-TE, SOD, VOC12 and COCO.
# Stages 5-6 (second round) look at the levers the first round left (the graph, the feature, the
# reading of clusters as foreground) and confirm the new default, K = 5 read with the frame rule;
# stage 7 tries the token facet on it.
# Tables: python -m deepcut.tables OUT/<stage> (pools seeds into mean ± std).
set -euo pipefail
{ # bash reads a script as it runs it: the braces make it read this one whole first, so an edit
  # made while a long sweep runs cannot change (or break) the rest of that run
data=$(realpath "$1"); out=$2
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}   # one thread per job: jobs on a shared machine do not spin
common=(launcher=basic save_overlays=false save_labels=false)
ecssd=(dataset=ecssd dataset.root="$data/ECSSD")
duts_sel=(dataset=duts_te dataset.root="$data/DUTS-TE" dataset.num_shards=4 dataset.shard=0)
tokencut_bs=(postprocess.bilateral_params.sigma_spatial=16 postprocess.bilateral_params.sigma_luma=16
             postprocess.bilateral_params.sigma_chroma=8 postprocess.bilateral_params.lam=128)
# Stages 1-5 ran on the first round's reading of the clusters (K = 2, border rule), pinned here since
# the configs' default changed in stage 6; `sweep_as_is` runs on the configs as they are.
sweep_as_is() { local dir=$1; shift; python run.py -m "$@" "${common[@]}" hydra.sweep.dir="$out/$dir"; }
sweep() { local dir=$1; shift; sweep_as_is "$dir" loss.k=2 mode.background=border "$@"; }

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
# 5. Second round, seed 0, on the first round's default (4 restarts + BS): the balance term, graph
#    sharpening, cosine affinity, facet and layer (features recomputed), then the frame rule with K.
sweep 5_levers/duts_ortho "${duts_sel[@]}" loss.ortho_weight=0.5,0.25,0
sweep 5_levers/ecssd_ortho "${ecssd[@]}" loss.ortho_weight=0.5,0.25,0
sweep 5_levers/duts_graph "${duts_sel[@]}" graph.power=2,4,8,16
sweep 5_levers/duts_knn "${duts_sel[@]}" graph.knn=8,16,48
sweep 5_levers/duts_knn8_power4 "${duts_sel[@]}" graph.knn=8 graph.power=4
sweep 5_levers/duts_l2 "${duts_sel[@]}" graph.l2=true
sweep 5_levers/ecssd_power "${ecssd[@]}" graph.power=4,8
sweep 5_levers/duts_facet "${duts_sel[@]}" backbone.facet=token,query,value
sweep 5_levers/duts_layer "${duts_sel[@]}" backbone.layer=-2,-3
sweep_as_is 5_levers/duts_frame "${duts_sel[@]}" mode.background=frame loss.k=2,3,4,5,6
sweep_as_is 5_levers/ecssd_frame "${ecssd[@]}" mode.background=frame loss.k=2,3,4,5,6
# 6. Confirmation of K = 5 with the frame rule (now the configs' default) over seeds 0-2, with
#    k-means given the same K and rule, and CC under both rules.
for spec in "ecssd ${ecssd[*]}" "duts_sel ${duts_sel[*]}" "sod dataset=sod dataset.root=$data/sod" \
            "voc12 dataset=voc12 dataset.root=$data" "coco dataset=coco20k dataset.root=$data/coco dataset.filenames=null"; do
  read -r name args <<< "$spec"
  # shellcheck disable=SC2086
  sweep_as_is 6_confirm/$name/new $args mode.background=frame loss.k=5 seed=0,1,2
  # shellcheck disable=SC2086
  sweep_as_is 6_confirm/$name/kmeans_frame $args method=kmeans method.k=5 method.background=frame
done
sweep_as_is 6_confirm/ecssd/cc "${ecssd[@]}" loss=cc mode.background=frame,border
sweep_as_is 6_confirm/duts_sel/cc "${duts_sel[@]}" loss=cc mode.background=frame,border
# 7. The token facet on the default (K = 5, frame rule), seeds 0-2 (features recomputed), and the
#    peers (+ BS) on the same token features: the facet is shared by every method.
for spec in "ecssd ${ecssd[*]}" "duts_sel ${duts_sel[*]}" "sod dataset=sod dataset.root=$data/sod" \
            "voc12 dataset=voc12 dataset.root=$data" "coco dataset=coco20k dataset.root=$data/coco dataset.filenames=null"; do
  read -r name args <<< "$spec"
  # shellcheck disable=SC2086
  sweep_as_is 7_token/$name $args backbone.facet=token seed=0,1,2
  # shellcheck disable=SC2086
  sweep_as_is 7_token/$name/peers $args backbone.facet=token method=lost,tokencut,dsm,kmeans
done
exit
}
