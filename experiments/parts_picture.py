"""Parts of one collection coloured by part id (docs/parts.md): the same colour is the same part in
every photo (deepcut.visualize.parts_grid).

    python experiments/parts_picture.py ../shared/data/CUB --images 12 [--out DIR] [override ...]
    python experiments/parts_picture.py chelsea --out examples            # the README's picture

With a CUB folder: its first --images photos (sorted by id) as one collection; "chelsea": scikit-image's
cat photo seen four ways (as it is, mirrored, closer, mirrored and darker), the notebook's collection,
with K = 3. Either is segmented with experiment=cub_parts (plus any run.py overrides) through the
Python API. Writes parts.jpg into outputs/parts_picture/<date>_<time>/ (or --out).
"""
from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path

from PIL import Image, ImageEnhance, ImageOps

import deepcut
from deepcut.visualize import parts_grid

ROOT = Path(__file__).resolve().parents[1]


def cat_views() -> list[Image.Image]:
    """scikit-image's chelsea, four ways (the notebook's collection)."""
    import skimage.data

    photo = Image.fromarray(skimage.data.chelsea())
    w, h = photo.size
    return [photo, ImageOps.mirror(photo), photo.crop((w // 8, h // 8, w - w // 8, h)),
            ImageEnhance.Brightness(ImageOps.mirror(photo)).enhance(0.6)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="the CUB folder (CUB_200_2011/ inside), or chelsea")
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--columns", type=int, default=6)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("overrides", nargs="*", help="run.py overrides on top of experiment=cub_parts")
    args = parser.parse_args()
    out = args.out or ROOT / "outputs" / "parts_picture" / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    out.mkdir(parents=True, exist_ok=True)
    if args.source == "chelsea":
        images, overrides, columns, tile = cat_views(), ["loss.k=3"], 4, 220
        ids = [f"view_{i}" for i in range(len(images))]  # the notebook's, so the same seeds
    else:
        from deepcut.datasets import CUB
        dataset = CUB(args.source, limit=args.images)
        images, overrides, columns, tile = [dataset[i].image for i in range(len(dataset))], [], args.columns, 160
        ids = dataset.ids
    seg = deepcut.create_segmenter("deepcut", overrides=["experiment=cub_parts", *overrides, *args.overrides], device="cpu")
    results = seg(images, ids=ids)
    picture = parts_grid(images, [r.labels for r in results], columns=columns, tile=tile)
    picture.save(out / "parts.jpg", quality=88)
    parts = sorted({int(v) for r in results for v in r.labels.unique().tolist()} - {0})
    print(f"{len(images)} photos, part ids {parts}: {out / 'parts.jpg'}")


if __name__ == "__main__":
    main()
