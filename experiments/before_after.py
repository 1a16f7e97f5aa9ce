"""Overlays of the demo photos under two settings, one row each, as one picture (docs/quality.md).

    python experiments/before_after.py --before "postprocess.bilateral=false" --after ""

Each side is a list of run.py overrides on top of the configs' defaults; the picture and the
seconds per image of each row go to outputs/before_after/<date>_<time>/ (or --out).
"""
from __future__ import annotations

import argparse
import shlex
import time
from datetime import datetime
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

import deepcut
from deepcut.datasets import Demo
from deepcut.visualize import overlay

ROOT = Path(__file__).resolve().parents[1]
HEIGHT = 180


def row(overrides: list[str], demo: Demo, repeat: int) -> tuple[list[Image.Image], float]:
    """Overlays of the demo photos and the best-of-`repeat` seconds per image (warm model)."""
    seg = deepcut.create_segmenter("deepcut", overrides=overrides, device="cpu")
    images = [demo[i].image for i in range(len(demo))]
    seconds = []
    for _ in range(repeat):
        start = time.perf_counter()
        outs = seg(images, ids=demo.ids)
        seconds.append((time.perf_counter() - start) / len(images))
    return [overlay(im, out.labels, out.box) for im, out in zip(images, outs)], min(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="", help="overrides of the first row (quoted, space-separated)")
    parser.add_argument("--after", default="", help="overrides of the second row")
    parser.add_argument("--labels", nargs=2, default=("before", "after"))
    parser.add_argument("--repeat", type=int, default=3, help="timed passes per row (the fastest counts)")
    parser.add_argument("--out", type=Path, help="output folder (default outputs/before_after/<time>)")
    args = parser.parse_args()
    out = args.out or ROOT / "outputs" / "before_after" / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    out.mkdir(parents=True, exist_ok=True)
    demo = Demo()
    rows, lines = [], []
    for name, overrides in zip(args.labels, (args.before, args.after)):
        pictures, seconds = row(shlex.split(overrides), demo, args.repeat)
        pictures = [p.resize((round(p.width * HEIGHT / p.height), HEIGHT)) for p in pictures]
        rows.append((f"{name}: {seconds:.3f} s/image", pictures))
        lines.append(f"{name}: overrides [{overrides}] {seconds:.3f} s/image (best of {args.repeat}, CPU)")
    width = max(sum(p.width for p in pics) + 4 * (len(pics) - 1) for _, pics in rows)
    canvas = Image.new("RGB", (width, len(rows) * (HEIGHT + 28)), "white")
    draw = ImageDraw.Draw(canvas)
    for r, (title, pics) in enumerate(rows):
        y = r * (HEIGHT + 28)
        draw.text((4, y + 4), title, fill="black", font=ImageFont.load_default(size=16))
        x = 0
        for p in pics:
            canvas.paste(p, (x, y + 26))
            x += p.width + 4
    canvas.save(out / "before_after.jpg", quality=88)
    (out / "before_after.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
