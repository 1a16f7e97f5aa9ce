"""Quality and time of DeepCut's restart count (optimizer.restarts with combine=vote) on a dataset.

    python experiments/restart_curve.py dataset=sod dataset.root=../shared/data/sod
    python experiments/restart_curve.py --restarts 1,2,4,8,16 --seeds 0,1,2 dataset=ecssd ...   # any run.py overrides

Restart r of an image draws the same random numbers whatever the restart count (deepcut/gnn.py),
so one fit with the largest count holds every smaller one: the first R restarts' vote is the
R-restart result. It is the same up to matmul rounding (the first layer's matmul has R times the
rows); the report gives the share of patches on which the direct R-restart fit agrees, for the first
batch. The time per image is the GNN stage (graph + fit + vote) with R restarts, measured directly
on the first batch, the counts interleaved, median of --repeats.

Writes results.md and results.csv (one row per seed and count) to --out
(default: outputs/restart_curve/<date_time>).
"""
from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import time
from pathlib import Path

import pandas as pd
import torch
from hydra.utils import instantiate

REPO = Path(__file__).resolve().parents[1]

from deepcut.api import compose_config, segmenter_from_config  # noqa: E402
from deepcut.cache import FeatureCache  # noqa: E402
from deepcut.pipeline import image_metrics  # noqa: E402
from deepcut.results import summarize_run  # noqa: E402
from deepcut.fit import build_graph, fit  # noqa: E402
from deepcut.methods.deepcut import vote  # noqa: E402
from deepcut.seeds import derive_seed  # noqa: E402


def fit_restarts(method, features: torch.Tensor, seeds: list[int], restarts: int):
    opt = type(method.optimisation)(**{**vars(method.optimisation), "restarts": restarts})
    w, ax, degree = build_graph(features, method.graph, method.loss)
    return fit(w, ax, degree, seeds, loss=method.loss, k=method.k, ortho_weight=method.ortho_weight,
               gnn=method.gnn, opt=opt)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--restarts", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 4, 8, 16])
    p.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0, 1, 2])
    p.add_argument("--batch", type=int, default=8, help="images per GNN batch (run.py: backbone.batch_size)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per count on the first batch")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("overrides", nargs="*", help="run.py overrides (dataset=..., backbone=...)")
    args = p.parse_args(argv)
    out = args.out or REPO / "outputs" / "restart_curve" / datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    out.mkdir(parents=True, exist_ok=True)
    cfg = compose_config("deepcut", [*args.overrides, "optimizer.combine=vote"])
    seg = segmenter_from_config(cfg, cache=FeatureCache(cfg.cache.dir) if cfg.cache.enabled else None)
    method, most = seg.method, max(args.restarts)
    if method.mode != "single":
        raise SystemExit("the restart curve is for mode=single")
    dataset = instantiate(cfg.dataset)
    rows = {(s, r): [] for s in args.seeds for r in args.restarts}
    timing, agreement = {r: [] for r in args.restarts}, {}
    started = time.time()
    for start in range(0, len(dataset), args.batch):
        samples = [dataset[i] for i in range(start, min(start + args.batch, len(dataset)))]
        features = [seg.prepare(*f) for f in seg.extractor([seg.extractor.preprocess(s.image) for s in samples])]
        by_grid: dict = {}
        for i, (_, grid) in enumerate(features):
            by_grid.setdefault(grid, []).append(i)
        for grid, idx in by_grid.items():
            stacked = torch.stack([features[i][0] for i in idx])
            if start == 0 and not timing[args.restarts[0]]:  # time each count directly, interleaved
                for _ in range(args.repeats):
                    for r in args.restarts:
                        t = time.perf_counter()
                        direct = fit_restarts(method, stacked, [derive_seed(0, samples[i].id) for i in idx], r)
                        labels = [vote(direct.soft[b], grid)[0] for b in range(len(idx))]
                        timing[r].append((time.perf_counter() - t) / len(idx))
                        agreement[r] = labels
            for seed in args.seeds:
                result = fit_restarts(method, stacked, [derive_seed(seed, samples[i].id) for i in idx], most)
                for b, i in enumerate(idx):
                    for r in args.restarts:
                        labels = vote(result.soft[b, :r], grid)[0]
                        if start == 0 and seed == 0 and isinstance(agreement[r], list):
                            agreement.setdefault(("patches", r), []).append(float((labels == agreement[r][b]).float().mean()))
                        full, mask, box = seg.post(labels.view(grid), samples[i].image)
                        rows[seed, r].append({"id": samples[i].id, **image_metrics(samples[i], full, mask, box)})
        print(f"[{time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.1f}] {start + len(samples)}/{len(dataset)} images",
              flush=True)
    table = []
    for (seed, r), per_image in rows.items():
        summary = summarize_run(per_image)
        table.append({"restarts": r, "seed": seed, "miou": summary.get("miou"), "max_f_beta": summary.get("max_f_beta"),
                      "acc": summary.get("acc"), "corloc": summary.get("corloc"), "n_images": len(per_image)})
    frame = pd.DataFrame(table)
    frame.to_csv(out / "results.csv", index=False)
    lines = ["# DeepCut: quality and time of the restart count (vote)", "",
             f"- command: python experiments/restart_curve.py {' '.join(argv if argv is not None else sys.argv[1:])}",
             f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}; {len(dataset)} images; "
             f"seeds {args.seeds}; torch {torch.__version__}, {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.1f}; "
             f"wall {time.time() - started:.0f} s", "",
             "mean ± std over seeds; s/image: the GNN stage with that many restarts (batch of "
             f"{args.batch}, median of {args.repeats}); agreement: patches on which the direct R-restart fit "
             "gives the same label as the first R restarts of the largest fit (first batch, seed 0).", "",
             "| restarts | mIoU | maxFβ | Acc | s / image | x time of 1 | agreement |", "|---|---|---|---|---|---|---|"]
    base = statistics.median(timing[min(args.restarts)])
    for r, g in frame.groupby("restarts"):
        def ms(col):
            v = g[col].astype(float)
            return "-" if v.isna().all() else f"{v.mean():.4f} ± {v.std(ddof=1) if len(v) > 1 else 0:.4f}"
        t = statistics.median(timing[r])
        agree = agreement.get(("patches", r), [float("nan")])
        lines.append(f"| {r} | {ms('miou')} | {ms('max_f_beta')} | {ms('acc')} | {t:.3f} | {t / base:.1f} | "
                     f"{statistics.mean(agree):.4f} |")
    lines += ["", "Per seed:", "", "| restarts | seed | mIoU | maxFβ | Acc |", "|---|---|---|---|---|"]
    fmt = lambda v: "-" if v is None or v != v else f"{v:.4f}"  # noqa: E731 - no ground truth: "-"
    lines += [f"| {r.restarts} | {r.seed} | {fmt(r.miou)} | {fmt(r.max_f_beta)} | {fmt(r.acc)} |" for r in frame.itertuples()]
    text = "\n".join(lines) + "\n"
    (out / "results.md").write_text(text)
    print(text)
    print(f"written to {out}")


if __name__ == "__main__":
    main()
