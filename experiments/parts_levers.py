"""Issue 24's levers for semantic parts on CUB, each a run.py run on the same features, one table.

    python experiments/parts_levers.py CUB_ROOT OUT [--seeds 0,1,2] [--only name,name] [--crop none|bbox]

Every lever is a list of overrides on top of BASE (the parts recipe on the offline backbone); each
(lever, seed) is `python run.py <overrides> seed=<s> hydra.run.dir=OUT/<lever>_s<s>`, skipped when
complete. OUT/levers.md: per lever NMI / ARI (Table 3's whole-photo protocol), NMI / ARI fg (every
keypoint read as a part), stage 1's CorLoc on the CUB boxes, keypoints on parts, mean ± std over the
seeds, and the command. Numbers on the offline DINOv2 ViT-S/14 are not comparable with the paper's
DINO ViT-S/8.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BASE = ["experiment=paper_table3_cub_parts_ncut", "backbone=dinov2_vits14_offline", "backbone.center=true",
        "save_overlays=false", "save_labels=false"]
ALL = "mode.collection_size=171"  # the development copy's 171 photos: one collection
LEVERS = {
    "paper_stage1_per_image": ["mode.foreground.source=k2_border"],
    "default_stage1_per_image": ["mode.foreground.source=default"],
    "coseg_pooled_kmeans": ["method=coseg", "method.k=4", "method.collection_size=171"],
    "collection": ["mode.foreground.source=default", ALL],
    "collection_lr1e-2": ["mode.foreground.source=default", ALL, "optimizer.lr=1e-2"],
    "collection_cross5": ["mode.foreground.source=default", ALL, "mode.cross_knn=5"],
    "collection_cross20": ["mode.foreground.source=default", ALL, "mode.cross_knn=20"],
    "collection_cross20_lr1e-2": ["mode.foreground.source=default", ALL, "mode.cross_knn=20", "optimizer.lr=1e-2"],
    "collection_cc_cross20": ["experiment=table3_cub_parts_cc", "mode.foreground.source=default", ALL, "mode.cross_knn=20"],
    "collection_token_cross20": ["mode.foreground.source=default", ALL, "mode.cross_knn=20", "backbone.facet=token"],
    "collection_k8_cross20": ["mode.foreground.source=default", ALL, "mode.cross_knn=20", "loss.k=8"],
    "coseg_layer-4": ["method=coseg", "method.k=4", "method.collection_size=171", "backbone.layer=-4"],
    "collection_layer-4": ["mode.foreground.source=default", ALL, "backbone.layer=-4"],
    "coseg_layer-6": ["method=coseg", "method.k=4", "method.collection_size=171", "backbone.layer=-6"],
    "collection_cc_layer-4_cross20": ["experiment=table3_cub_parts_cc", "mode.foreground.source=default", ALL,
                                      "mode.cross_knn=20", "backbone.layer=-4"],
    "collection_layer-4_lr1e-2": ["mode.foreground.source=default", ALL, "backbone.layer=-4", "optimizer.lr=1e-2"],
    "coseg_token": ["method=coseg", "method.k=4", "method.collection_size=171", "backbone.facet=token"],
    "coseg_res448": ["method=coseg", "method.k=4", "method.collection_size=171", "backbone.resolution=448"],
    "collection_res448": ["mode.foreground.source=default", ALL, "backbone.resolution=448"],
    "collection_res448_cross20": ["mode.foreground.source=default", ALL, "backbone.resolution=448", "mode.cross_knn=20"],
}
COLUMNS = [("nmi", "NMI"), ("ari", "ARI"), ("nmi_fg", "NMI fg"), ("ari_fg", "ARI fg"), ("corloc", "stage-1 CorLoc"),
           ("kp_on_parts", "keypoints on parts")]


def overrides(lever: list[str], root: str, crop: str) -> list[str]:
    """BASE with the lever's overrides; a lever's experiment= replaces BASE's."""
    base = [o for o in BASE if not (o.startswith("experiment=") and any(x.startswith("experiment=") for x in lever))]
    return [*base, *lever, f"dataset.root={root}", f"dataset.crop={crop}"]


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
        cells = [mean_std([r.get(k) for r in runs], 1 if k == "corloc" else 100) for k, _ in COLUMNS]
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
