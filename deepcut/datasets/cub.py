"""CUB-200-2011: bird masks (when the separately downloaded segmentations/ are present), boxes and
part keypoints, on the official test split, ReDO's 1000 test images or all of them, whole or
cropped to the bird's box.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np

from deepcut.datasets.base import Entry, ImageDataset, Sample

log = logging.getLogger("deepcut")

class CUB(ImageDataset):
    """CUB-200-2011 (Wah et al. 2011): bird masks, boxes and the visible ones of the 15 part keypoints.

    ``subset``: "test" (official split, is_training 0: 5794 images), "all" (11788) or "test1000"
    (the 1000 images marked 2 in ReDO's train_val_test_split.txt; see the README for why).
    ``masks``: "auto" uses segmentations/ when it is there and otherwise evaluates boxes (CorLoc)
    and keypoints (NMI/ARI) only, with a warning; true requires the masks; false ignores them.
    ``crop``: "bbox" crops each image (mask, keypoints) to the bird's box, the foreground protocol
    of Choudhury et al. 2021's notebook (their loader's crop_to_bbox: integer box, keypoints shifted
    and clamped into the crop; summary nmi_fg / ari_fg); "none" keeps the whole photo, the protocol
    of the paper's Table 3 (summary nmi / ari).
    """
    name = "cub"
    SUBSETS = ("test", "test1000", "all")

    def __init__(self, root, subset: str = "test", masks="auto", limit: int | None = None, shard: int = 0,
                 num_shards: int = 1, crop: str = "none"):
        if subset not in self.SUBSETS:
            raise self._error(f"subset must be one of {', '.join(self.SUBSETS)}, got {subset!r}")
        if crop not in ("none", "bbox"):
            raise self._error(f"crop must be none or bbox, got {crop!r}")
        self.crop = crop
        if masks not in ("auto", True, False):
            raise self._error(f"masks must be auto, true or false, got {masks!r}")
        root = Path(root)
        # root holds CUB_200_2011/ and the separately downloaded segmentations/ (either beside or
        # inside CUB_200_2011/); root pointing at CUB_200_2011 itself works too.
        base = root if (root / "images.txt").is_file() else self._folder(root / "CUB_200_2011")
        folder = next((p for p in (root / "segmentations", base / "segmentations", base.parent / "segmentations")
                       if p.is_dir()), None) if masks is not False else None
        if folder is None and masks is True:
            folder = self._folder(root / "segmentations")
        if folder is None and masks == "auto":
            log.warning("cub: no segmentations/ beside or inside %s: evaluating boxes (CorLoc) and keypoints "
                        "(NMI/ARI) only, no mask metrics; see %s", base, self.readme)
        self.task = "segmentation" if folder is not None else "localization"
        files = self._images_txt(base / "images.txt")
        chosen = self._subset(base, subset, sorted(files))
        locs = self._table(base / "parts" / "part_locs.txt", 5)  # image_id part_id x y visible
        locs = locs[locs[:, 4] > 0]
        locs = locs[np.argsort(locs[:, 0], kind="stable")]
        starts, ends = (np.searchsorted(locs[:, 0], chosen, side=side) for side in ("left", "right"))
        # image_id x y width height, in pixels from the top-left corner: edges (x, y, x + w, y + h).
        xywh = {int(r[0]): r[1:] for r in self._table(base / "bounding_boxes.txt", 5)}
        entries = []
        for image_id, start, end in zip(chosen, starts, ends):
            stem = files[image_id].rsplit(".", 1)[0]
            if image_id not in xywh:
                raise self._error(f"{base / 'bounding_boxes.txt'} has no box for image {image_id} ({files[image_id]})")
            x, y, w, h = xywh[image_id]
            entries.append(Entry(stem.replace("/", "__"), base / "images" / files[image_id],
                                 None if folder is None else folder / f"{stem}.png",
                                 boxes=np.array([[x, y, x + w, y + h]], np.float32),
                                 parts=locs[start:end][:, [2, 3, 1]].astype(np.float32)))
        for kind in ("image", "mask"):
            missing = [getattr(e, kind) for e in entries if getattr(e, kind) is not None and not getattr(e, kind).is_file()]
            if missing:
                raise self._error(f"{len(missing)} of {len(entries)} {kind} files are missing (first: {missing[0]})")
        super().__init__(entries, limit, shard, num_shards)

    def __getitem__(self, i: int) -> Sample:
        sample = super().__getitem__(i)
        if self.crop == "none" or sample.boxes is None:  # no box without ground truth: the whole photo
            return sample
        x0, y0, x1, y1 = (int(v) for v in sample.boxes[0])
        x1, y1 = max(min(x1, sample.image.width), x0 + 1), max(min(y1, sample.image.height), y0 + 1)
        parts = sample.parts.copy()
        parts[:, 0] = np.clip(parts[:, 0] - x0, 0, x1 - x0 - 1e-3)
        parts[:, 1] = np.clip(parts[:, 1] - y0, 0, y1 - y0 - 1e-3)
        return dataclasses.replace(sample, image=sample.image.crop((x0, y0, x1, y1)),
                                   mask=None if sample.mask is None else sample.mask[y0:y1, x0:x1],
                                   boxes=np.array([[0, 0, x1 - x0, y1 - y0]], np.float32), parts=parts)

    def _table(self, path: Path, columns: int) -> np.ndarray:
        """A whitespace-separated numeric index file (fast enough for the 176k lines of part_locs.txt)."""
        text = self._file(path).read_text()  # a missing file says so, before any parsing
        try:
            return np.array(text.split(), dtype=np.float64).reshape(-1, columns)
        except ValueError:
            raise self._error(f"{path}: expected {columns} numbers on every line") from None

    def _images_txt(self, path: Path) -> dict[int, str]:
        """images.txt: '<image_id> <relative path>' per line."""
        files = {}
        for n, line in enumerate(self._file(path).read_text().splitlines(), start=1):
            cells = line.split()
            if not cells:
                continue
            if len(cells) != 2 or not cells[0].isdigit():
                raise self._error(f"{path}, line {n}: {line.strip()!r} is not '<image_id> <path>'")
            files[int(cells[0])] = cells[1]
        return files

    def _subset(self, base: Path, subset: str, ids: list[int]) -> list[int]:
        if subset == "all":
            return ids
        if subset == "test":
            split = self._table(base / "train_test_split.txt", 2)  # image_id is_training
            test = {int(i) for i, training in split if training == 0}
        else:
            split_file = base / "train_val_test_split.txt"
            test = {int(i) for i, part in self._table(split_file, 2) if part == 2}  # ReDO: 0 train, 1 val, 2 test
            if len(test) != 1000:
                raise self._error(f"{split_file} marks {len(test)} images as test (2) where ReDO's file marks 1000")
        return [i for i in ids if i in test]
