"""PASCAL VOC 2007/2012 object boxes for CorLoc: an ImageSets/Main split listed when the dataset
is built, each image's XML annotation parsed when the image is loaded.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from deepcut.datasets.base import Entry, ImageDataset
from deepcut.datasets.io import DatasetError
from deepcut.metrics import voc_box_to_edges


def _voc_boxes(xml: Path) -> np.ndarray:
    """Every object of a VOC annotation, difficult and truncated ones included (as LOST/TokenCut).
    VOC boxes are 1-based inclusive pixel indices: (xmin - 1, ymin - 1, xmax, ymax) in edges."""
    try:
        objects = ET.parse(xml).getroot().findall("object")
        boxes = [[float(o.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")] for o in objects]
    except (ET.ParseError, TypeError, ValueError) as err:
        raise DatasetError(f"{xml}: not a VOC annotation with numeric bndbox values ({err})") from err
    return np.array([voc_box_to_edges(*b) for b in boxes], dtype=np.float32).reshape(-1, 4)


class VOC(ImageDataset):
    """PASCAL VOC 2007/2012 boxes for CorLoc; ``split`` from ImageSets/Main (trainval: 5011 / 11540).

    ``root``: the folder holding VOCdevkit/VOC<year>/, or VOCdevkit/ itself, or VOC<year>/ itself.
    """
    task = "localization"

    def __init__(self, root, year: int = 2007, split: str = "trainval", limit: int | None = None, shard: int = 0,
                 num_shards: int = 1):
        self.name = f"voc{str(year)[-2:]}"
        root = Path(root)
        candidates = [root / "VOCdevkit" / f"VOC{year}", root / f"VOC{year}"]
        if root.name == f"VOC{year}":
            candidates.append(root)
        base = next((c for c in candidates if (c / "Annotations").is_dir()), candidates[0])
        # "trainval+test": the union of several ImageSets/Main lists (e.g. a small dev copy).
        lists = [self._file(base / "ImageSets" / "Main" / f"{name}.txt") for name in str(split).split("+")]
        ids = list(dict.fromkeys(i for path in lists for i in path.read_text().split()))
        listing = " + ".join(map(str, lists))
        for folder, suffix in (("JPEGImages", ".jpg"), ("Annotations", ".xml")):
            present = {p.stem for p in self._folder(base / folder).glob(f"*{suffix}")}
            missing = [i for i in ids if i not in present]
            if missing:
                raise self._error(f"{len(missing)} of the {len(ids)} ids in {listing} have no {folder}/*{suffix} "
                                  f"(first: {missing[0]})")
        self.annotations = base / "Annotations"
        super().__init__([Entry(i, base / "JPEGImages" / f"{i}.jpg") for i in ids], limit, shard, num_shards)

    def ground_truth_files(self, entry: Entry) -> list[Path]:
        return [self.annotations / f"{entry.id}.xml"]

    def _boxes(self, entry: Entry) -> np.ndarray:
        # Parsed here, in the worker: reading 11k XML files would make listing slow.
        return _voc_boxes(self.annotations / f"{entry.id}.xml")
