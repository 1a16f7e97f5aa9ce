"""CUB photos with their parts, one collection, coloured by part id (docs/parts.md).

    python experiments/parts_picture.py ../shared/data/CUB --images 12 [--out DIR] [override ...]

Segments the first --images CUB photos (sorted by id) as one collection with experiment=cub_parts
(plus any run.py overrides) through the Python API and writes parts.jpg, made by
deepcut.visualize.parts_grid: the same colour is the same part id in every photo. Output goes to
outputs/parts_picture/<date>_<time>/ (or --out).
"""
from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path

import deepcut
from deepcut.datasets import CUB
from deepcut.visualize import parts_grid

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, help="the CUB folder (CUB_200_2011/ inside)")
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--columns", type=int, default=6)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("overrides", nargs="*", help="run.py overrides on top of experiment=cub_parts")
    args = parser.parse_args()
    out = args.out or ROOT / "outputs" / "parts_picture" / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    out.mkdir(parents=True, exist_ok=True)
    dataset = CUB(args.root, limit=args.images)
    samples = [dataset[i] for i in range(len(dataset))]
    seg = deepcut.create_segmenter("deepcut", overrides=["experiment=cub_parts", *args.overrides], device="cpu")
    results = seg([s.image for s in samples], ids=[s.id for s in samples])
    picture = parts_grid([s.image for s in samples], [r.labels for r in results], columns=args.columns, tile=160)
    picture.save(out / "parts.jpg", quality=88)
    parts = sorted({int(v) for r in results for v in r.labels.unique().tolist()} - {0})
    print(f"{len(samples)} photos, part ids {parts}: {out / 'parts.jpg'}")


if __name__ == "__main__":
    main()
