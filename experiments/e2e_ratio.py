"""run.py's own per-image time for the configs' default against a forward-only run (issue 25).

    python experiments/e2e_ratio.py ../shared/data/ECSSD --images 40 --rounds 2 --out /tmp/e2e [override ...]

Runs `python run.py dataset=ecssd` with the feature cache off, alternating the two recipes round
after round so that both see the same machine load, and prints each run's mean `time_s` (run.py's
per-image time: backbone, method and post-processing) and wall time, then the ratio of the means.
"forward-only" is `method=whole postprocess.bilateral=false`: the backbone and nothing else. Time it
on an idle machine. Overrides (e.g. optimizer.restarts=8) apply to both recipes; `--recipe` replaces
the default by other overrides, e.g. a self-trained head (issue 29):
    python experiments/e2e_ratio.py ../shared/data/ECSSD --recipe "method=head method.checkpoint=RUN/head.pt"
Runs go under OUT (default: a temporary directory).
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

RECIPES = {"default": [], "forward-only": ["method=whole", "postprocess.bilateral=false"]}
ROOT = Path(__file__).resolve().parent.parent


def run_once(root: Path, images: int, extra: list[str], out: Path) -> tuple[float, float]:
    """(mean time_s over the images, wall seconds of the whole run.py process)."""
    cmd = [sys.executable, str(ROOT / "run.py"), "dataset=ecssd", f"dataset.root={root}", f"dataset.limit={images}",
           "cache.enabled=false", "save_labels=false", "save_overlays=false", f"hydra.run.dir={out}", *extra]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - start
    rows = pd.read_csv(out / "results.csv")
    if len(rows) != images or rows["time_s"].isna().any():
        raise SystemExit(f"{out / 'results.csv'}: expected {images} timed rows, found {len(rows)}")
    return float(rows["time_s"].mean()), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, help="the ECSSD folder (images/, ground_truth_mask/)")
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--recipe", default="", help="the overrides timed in place of the default (one string)")
    parser.add_argument("overrides", nargs="*", help="run.py overrides for both recipes")
    args = parser.parse_intermixed_args()  # overrides may follow the options
    out = args.out or Path(tempfile.mkdtemp(prefix="e2e_ratio_"))
    recipes = {**RECIPES, "default": args.recipe.split()}
    times: dict[str, list[float]] = {name: [] for name in recipes}
    for r in range(args.rounds):
        for name, extra in recipes.items():
            per_image, wall = run_once(args.root.resolve(), args.images, [*args.overrides, *extra],
                                   out / f"{r}_{name}")
            times[name].append(per_image)
            print(f"round {r}: {name:>12}: time_s {per_image:.3f} s/image, wall {wall:.1f} s", flush=True)
    means = {name: statistics.mean(v) for name, v in times.items()}
    label = args.recipe or "default"
    print(f"{label} / forward-only: {means['default'] / means['forward-only']:.2f}x "
          f"({means['default']:.3f} vs {means['forward-only']:.3f} s/image, {args.rounds} rounds, {args.images} images"
          + (f", with {' '.join(args.overrides)})" if args.overrides else ")"))


if __name__ == "__main__":
    main()
