#!/usr/bin/env bash
# Several objects per image (issue 26): class-agnostic instance proposals (postprocess.instances=N)
# scored by pycocotools' COCOeval, DeepCut's recipes against CutLER's MaskCut, k-means and the
# single-object output (one proposal per photo), all on the same features (the offline DINOv2
# ViT-S/14: not comparable with CutLER's DINO ViT-B/8 numbers) and the same post-processing.
#   experiments/instances.sh SHARED_DATA OUT [extra overrides...]
# SHARED_DATA holds coco/ (train2017, val2017 and their annotations) and VOCdevkit/VOC2012/.
# SETS="coco_train coco_val voc12" (default), SEEDS="0 1 2", N=3 (proposals per image: MaskCut's 3),
# SETTINGS="..." a subset of the settings below. A complete run is skipped, an unfinished one resumed.
# Writes OUT/<set>/<setting>_s<seed>/ (run.py's run directories) and OUT/table.md.
set -euo pipefail
{ # read whole before running: an edit made during a long sweep cannot change the rest of it
data=$(realpath "$1"); out=$2; shift 2
cd "$(dirname "$0")/.."
seeds=${SEEDS:-0 1 2}; n=${N:-3}
declare -A sets=(
  [coco_train]="dataset=coco20k dataset.root=$data/coco dataset.filenames=null"
  [coco_val]="dataset=coco20k dataset.root=$data/coco dataset.filenames=null dataset.split=val"
  [voc12]="dataset=voc12 dataset.root=$data"
)
settings=("single postprocess.instances=1"
          "deepcut postprocess.instances=$n"
          "deepcut_best postprocess.instances=$n optimizer.combine=best"
          "deepcut_cc postprocess.instances=$n loss=cc"
          "maskcut postprocess.instances=$n method=maskcut"
          "kmeans postprocess.instances=$n method=kmeans method.k=5 method.background=frame")
for set in ${SETS:-coco_train coco_val voc12}; do
  for s in "${settings[@]}"; do
    read -r name args <<< "$s"
    [[ " ${SETTINGS:-$name} " == *" $name "* ]] || continue
    for seed in $seeds; do
      dir="$out/$set/${name}_s$seed"
      if grep -qs '"complete": true' "$dir/summary.json"; then continue; fi
      mkdir -p "$out/$set"
      # shellcheck disable=SC2086
      python run.py ${sets[$set]} $args save_overlays=false seed="$seed" hydra.run.dir="$dir" "$@" \
        > "$dir.log" 2>&1 || echo "run $set $name seed $seed failed: see $dir.log" >&2
    done
  done
done
python - "$out" "$n" <<'EOF'
import json, sys
from pathlib import Path
from deepcut.tables import Table, mean_std, to_markdown

out, n = Path(sys.argv[1]), sys.argv[2]
names = {"single": "single-object output (postprocess.instances=1)",
         "deepcut": f"DeepCut default (N-cut K=5, frame rule, restarts voted): foreground components, N={n}",
         "deepcut_best": f"DeepCut N-cut K=5, frame rule, lowest-loss restart (optimizer.combine=best): clusters' components, N={n}",
         "deepcut_cc": f"DeepCut CC (k-less, K_max 10): clusters' components, N={n}",
         "maskcut": f"MaskCut (CutLER's N-cut, masking found objects; method=maskcut), N={n}",
         "kmeans": f"k-means K=5, frame rule: clusters' components, N={n}"}
keys = ["ap50_box", "ap_box", "ar1_box", "ar10_box", "ap50_mask", "ar10_mask", "corloc"]
tables = []
for folder in sorted(p for p in out.iterdir() if p.is_dir()):
    rows = []
    for key, title in names.items():
        runs = [json.loads(p.read_text()) for p in sorted(folder.glob(f"{key}_s*/summary.json"))]
        runs = [r for r in runs if r.get("complete")]
        if not runs:
            continue
        scale = lambda k: 1 if k == "corloc" else 100  # noqa: E731
        rows.append([title, *[mean_std([r.get(k) for r in runs], ".1f", scale(k)) for k in keys],
                     f"{sum(r['n_instances_mean'] for r in runs) / len(runs):.2f}", str(len(runs)), str(runs[0]["n_images"])])
    tables.append(Table(f"{folder.name}: class-agnostic instances (COCOeval, %)",
                        ["Setting", "AP50 box", "AP box", "AR@1 box", "AR@10 box", "AP50 mask", "AR@10 mask",
                         "CorLoc", "proposals / image", "seeds", "images"], rows,
                        notes=["mean ± std (sample) over the seeds; offline DINOv2 ViT-S/14 features (not the paper's or "
                               "CutLER's backbone); mask AP only where the ground truth has masks (COCO)."]))
text = "\n".join(to_markdown(t) for t in tables)
(out / "table.md").write_text(text)
print(text)
EOF
exit
}
