"""COCO20k: COCO 2014 train images (or the 2017 layout, same ids) with their non-crowd boxes for
CorLoc, restricted to LOST's 19 817-image list; the annotations are read with pycocotools. Every
object's mask (crowd regions flagged) is the ground truth of instance AP (deepcut.instances); the
val split serves it too.
"""
from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import numpy as np

from deepcut.datasets.base import Entry, ImageDataset, _listing
from deepcut.datasets.io import DatasetError, _orient, _orient_boxes


def _coco_ids(path: Path) -> list[int]:
    """COCO image ids of a file list such as LOST's coco_20k_filenames.txt
    ('train2014/COCO_train2014_000000000036.jpg' per line: the id is the last number)."""
    ids = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            try:
                ids.append(int(Path(line.strip()).stem.rsplit("_", 1)[-1]))
            except ValueError:
                raise DatasetError(f"{path}, line {n}: {line.strip()!r} is not a COCO file name") from None
    return ids


class COCO20k(ImageDataset):
    """COCO 2014 train images with their non-crowd boxes, restricted to LOST's 19 817-image list.

    Layouts: train2014/ + annotations/instances_train2014.json, or the 2017 ones (same image ids).
    ``filenames``: that list; null -> every annotated image whose file exists and that has at least
    one non-crowd box. Ids are the 12-digit COCO image id in both layouts. ``split``: train (LOST's
    COCO20k) or val (val2014/ or val2017/, e.g. for instance AP).
    """
    name, task = "coco20k", "localization"

    def __init__(self, root, filenames=None, limit: int | None = None, shard: int = 0, num_shards: int = 1,
                 split: str = "train"):
        from pycocotools.coco import COCO  # only this dataset needs it

        if split not in ("train", "val"):
            raise DatasetError(f"dataset.split={split!r}: COCO's splits here are train and val")
        root = self._folder(Path(root))
        layouts = [(root / f"{split}{y}", root / "annotations" / f"instances_{split}{y}.json") for y in (2014, 2017)]
        complete = [(i, a) for i, a in layouts if i.is_dir() and a.is_file()]
        if not complete:
            raise self._error(f"expected {split}2014/ with annotations/instances_{split}2014.json (or the 2017 pair), "
                              f"but {_listing(root)}")
        images, annotations = complete[0]
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
            coco = COCO(str(annotations))
        present = set(os.listdir(images))
        if filenames is None:
            ids = [i for i in coco.getImgIds() if coco.imgs[i]["file_name"] in present]
        else:
            ids = _coco_ids(self._file(Path(filenames)))
            unknown = [i for i in ids if i not in coco.imgs]
            if unknown:
                raise self._error(f"{len(unknown)} images of {filenames} are not in {annotations} "
                                  f"(first id: {unknown[0]})")
            missing = [coco.imgs[i]["file_name"] for i in ids if coco.imgs[i]["file_name"] not in present]
            if missing:
                raise self._error(f"{len(missing)} images of {filenames} are missing from {images} "
                                  f"(first: {missing[0]})")
        entries = []
        for i in ids:
            # Crowd regions are not objects to find: LOST drops iscrowd == 1. Unlike LOST, no rounding.
            xywh = np.array([a["bbox"] for a in coco.imgToAnns[i] if not a["iscrowd"]], dtype=np.float32).reshape(-1, 4)
            if len(xywh) or filenames is not None:
                objects = [{"bbox": a["bbox"], "iscrowd": a["iscrowd"], "segmentation": a.get("segmentation")}
                           for a in coco.imgToAnns[i]]
                entries.append(Entry(f"{i:012d}", images / coco.imgs[i]["file_name"],
                                     boxes=np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1),
                                     instances=objects))
        super().__init__(entries, limit, shard, num_shards)

    def _instances(self, entry: Entry, stored: tuple[int, int], orientation: int) -> list[dict]:
        """Every annotation's mask (polygons or RLE, decoded at the stored size; None without one) and box, upright."""
        from PIL import Image
        from pycocotools import mask as coco_mask

        w, h = stored
        out = []
        for a in entry.instances:
            segm, mask = a["segmentation"], None
            if segm:
                rle = coco_mask.frPyObjects(segm, h, w) if isinstance(segm, list) or isinstance(segm["counts"], list) else segm
                mask = coco_mask.decode(coco_mask.merge(rle) if isinstance(rle, list) else rle).astype(bool)
                mask = np.asarray(_orient(Image.fromarray(mask), orientation))
            x, y, bw, bh = a["bbox"]
            box = _orient_boxes(np.array([[x, y, x + bw, y + bh]], np.float32), orientation, stored)[0]
            out.append({"box": box, "mask": mask, "iscrowd": bool(a["iscrowd"])})
        return out
