"""Issue 24's levers for semantic parts on CUB, each a run.py run on the same photos, one table.

    python experiments/parts_levers.py CUB_ROOT OUT [--seeds 0,1,2] [--only name,name] [--crop none|bbox]

Every lever is a list of overrides on top of BASE (`experiment=cub_parts`, the product's parts recipe,
on every photo of CUB_ROOT: `dataset.subset=all`); a lever's `experiment=` replaces BASE's. Each
(lever, seed) is `python run.py <overrides> seed=<s> hydra.run.dir=OUT/<lever>_s<s>`, skipped when
complete. OUT/levers.md: per lever NMI / ARI (Table 3's whole-photo protocol: a keypoint on predicted
background is one more cluster), NMI / ARI fg (every keypoint read as a part: the box-crop protocol's
score), the foreground's CorLoc on the CUB boxes, keypoints on parts, mean ± std over the seeds, and
the overrides. Numbers on the offline DINOv2 ViT-S/14 are not comparable with the paper's DINO ViT-S/8.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BASE = ["experiment=cub_parts", "dataset.subset=all", "save_overlays=false", "save_labels=false"]
AMIR = ["method=coseg", "method.collection_size=200"]  # Amir et al.'s part co-segmentation, as published
# The levers were measured one at a time from START, the recipe before its last step; the recipe is START
# with the best pair of them on box crops, graph.l2=true and optimizer.steps=300 (better on whole photos too).
START = ["graph.l2=false", "optimizer.steps=100"]
PAPER = ["experiment=paper_table3_cub_parts_ncut", "backbone=dinov2_vits14_offline", "backbone.center=true"]
LEVERS = {
    "cub_parts": [],                                                  # the recipe: START + cosine graph + 300 steps
    "start": START,                                                   # where the levers were measured from
    # The peers on the same photos and backbone.
    "amir_published_descriptor": [*AMIR, "backbone.layer=-1"],        # their key of the last block
    "amir_same_features": AMIR,                                       # the recipe's hypercolumn
    "amir_log_bin": [*AMIR, "backbone.layer=-1", "backbone.log_bin=2"],
    "paper_recipe": PAPER,                                            # Table 3's recipe, per image
    "previous_cub_parts": ["experiment=table3_cub_parts_cc", "backbone=dinov2_vits14_offline", "backbone.center=true",
                           "mode.foreground.source=default", "mode.collection_size=200", "mode.cross_knn=20"],
    # Descriptor.
    "last_block_only": [*START, "backbone.layer=-1"],
    "block_-4_only": [*START, "backbone.layer=-4"],
    "blocks_-6_-1": [*START, "backbone.layer=[-6,-1]"],
    "token_facet": [*START, "backbone.facet=token"],
    "log_bin": [*START, "backbone.log_bin=2"],
    "stride_7": [*START, "backbone.stride=7"],
    "resolution_448": [*START, "backbone.resolution=448"],
    # The parts stage.
    "no_center_parts": [*START, "mode.center_parts=false"],
    "stage1_k2_border": [*START, "mode.foreground.source=k2_border"],
    "blocks_graph": [*START, "mode.collection_graph=blocks"],         # a graph per image, cross_knn edges in the input
    "no_spatial_edges": [*START, "mode.spatial_weight=0"],
    "spatial_2": [*START, "mode.spatial_weight=2"],
    "knn_10": [*START, "mode.cross_knn=10"],
    "knn_40": [*START, "mode.cross_knn=40"],
    "cosine_graph": [*START, "graph.l2=true"],
    # Optimisation and K.
    "restarts_1": [*START, "optimizer.restarts=1"],
    "restarts_8": [*START, "optimizer.restarts=8"],
    "steps_300": [*START, "optimizer.steps=300"],
    "lr_1e-2": [*START, "optimizer.lr=1e-2"],
    "k_8": [*START, "loss.k=8"],                                      # over-clustering (NMI favours more clusters)
    "k_8_merged_to_4": [*START, "loss.k=8", "mode.merge_to=4"],       # over-clustering, then Ward's merge to K = 4
    "cc_kless": [*START, "loss=cc", "loss.k=10"],                     # CC finds its number of parts
    "collections_of_50": [*START, "mode.collection_size=50"],         # chunks instead of one GNN for all
}
COLUMNS = [("nmi", "NMI"), ("ari", "ARI"), ("nmi_fg", "NMI fg"), ("ari_fg", "ARI fg"), ("corloc", "CorLoc"),
           ("kp_on_parts", "keypoints on parts"), ("n_labels_mean", "labels")]


def overrides(lever: list[str], root: str, crop: str) -> list[str]:
    """BASE with the lever's overrides; a later value of a key replaces an earlier one (a lever's
    experiment= replaces BASE's, its graph.l2=true START's graph.l2=false)."""
    latest = {o.split("=", 1)[0]: o for o in [*BASE, *lever, f"dataset.root={root}", f"dataset.crop={crop}"]}
    return list(latest.values())


def mean_std(values: list[float], scale: float) -> str:
    values = [v * scale for v in values if v is not None]
    if not values:
        return "–"
    return f"{statistics.mean(values):.1f}" + (f" ± {statistics.stdev(values):.1f}" if len(values) > 1 else "")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root")
    p.add_argument("out", type=Path)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--only", default=None, help="comma-separated lever names (default: all)")
    p.add_argument("--crop", default="none", choices=["none", "bbox"])
    args = p.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    names = args.only.split(",") if args.only else list(LEVERS)
    rows = []
    for name in names:
        command = overrides(LEVERS[name], args.root, args.crop)
        runs = []
        for seed in seeds:
            run_dir = args.out / f"{name}_s{seed}"
            summary = run_dir / "summary.json"
            if not (summary.exists() and json.loads(summary.read_text()).get("complete")):
                print(f"{name} seed {seed}", flush=True)
                done = subprocess.run([sys.executable, "run.py", *command, f"seed={seed}", f"hydra.run.dir={run_dir}"],
                                      cwd=REPO, capture_output=True, text=True)
                if done.returncode != 0:
                    print(f"  failed: {done.stderr[-1500:]}", flush=True)
                    continue
            runs.append(json.loads(summary.read_text()))
        scale = {"corloc": 1, "n_labels_mean": 1}
        cells = [mean_std([r.get(k) for r in runs], scale.get(k, 100)) for k, _ in COLUMNS]
        rows.append(f"| {name} | " + " | ".join(cells) + f" | {len(runs)} | `{' '.join(LEVERS[name])}` |")
        print(rows[-1], flush=True)
    header = ("| lever | " + " | ".join(t for _, t in COLUMNS) + " | seeds | overrides on BASE |\n"
              "|---|" + "---:|" * len(COLUMNS) + "---:|---|")
    text = (f"# Parts levers on CUB (dataset.crop={args.crop}), NMI / ARI (%)\n\nBASE: `python run.py {' '.join(BASE)} "
            f"dataset.root=CUB dataset.crop={args.crop}`; offline DINOv2 ViT-S/14 (not comparable with the paper's "
            "DINO ViT-S/8). mean ± std over seeds.\n\n" + header + "\n" + "\n".join(rows) + "\n")
    (args.out / "levers.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
