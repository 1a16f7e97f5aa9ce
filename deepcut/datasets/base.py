"""The base dataset: `ImageDataset` lists `Entry`s (image and ground-truth paths, sorted by id,
limited and sharded) when built and decodes one `Sample` per image in `__getitem__`, i.e. in
DataLoader workers. Its helpers find folders, files and image/mask pairs, and say in every error
what is there instead and which README describes the layout. Each dataset family subclasses it.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from deepcut.datasets.io import (
    DatasetError,
    _orient_boxes,
    _orient_points,
    _upright_rgb,
    file_digest,
    sampled_digest,
    load_mask,
)


@dataclass
class Sample:
    id: str                            # unique and filesystem-safe ('__' stands for '/')
    path: str                          # the image file
    image: Image.Image                 # RGB, EXIF orientation applied
    mask: np.ndarray | None = None     # bool (H, W), same size as image
    boxes: np.ndarray | None = None    # float32 (M, 4): x0, y0, x1, y1 in pixel edges (x1, y1 exclusive)
    parts: np.ndarray | None = None    # float32 (P, 3): x, y, part_id of the visible keypoints
    instances: list[dict] | None = None  # every object: {"box": x0, y0, x1, y1, "mask": bool (H, W) or None, "iscrowd"}


def _listing(folder: Path) -> str:
    names = sorted(p.name + "/" * p.is_dir() for p in folder.iterdir())
    if not names:
        return f"{folder.resolve()} is empty"
    more = f", ... ({len(names)} entries)" if len(names) > 12 else ""
    return f"{folder.resolve()} holds: {', '.join(names[:12])}{more}"


def _found(path: Path) -> str:
    """What is there instead of ``path``, for error messages: its folder's listing, or which of its
    folders does not exist (with the listing of the one above it, unless that is the file system's root)."""
    path = Path(path).absolute()
    folder = path.parent
    while not folder.is_dir():
        folder = folder.parent
    if folder == path.parent:
        return _listing(folder)
    missing = folder / path.relative_to(folder).parts[0]
    return f"{missing} does not exist" + ("" if folder == Path(folder.anchor) else f" ({_listing(folder)})")



@dataclass(frozen=True)
class Entry:
    """One listed image and its ground truth; boxes and parts are on the stored (unrotated) pixels."""
    id: str
    image: Path
    mask: Path | None = None
    boxes: np.ndarray | None = None
    parts: np.ndarray | None = None
    instances: list[dict] | None = None  # the family's own annotations of every object (COCO: its anns)


def shard_of(image_id: str, num_shards: int) -> int:
    """The shard an image belongs to: a hash of its id (not its place in a listing), so every job of
    a split run picks the same images whatever order the files are listed in, and adding images
    to a data set moves no other image to another shard."""
    return int.from_bytes(hashlib.sha256(image_id.encode()).digest()[:8], "big") % num_shards


def _whole(value, at_least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= at_least


class ImageDataset(torch.utils.data.Dataset):
    """Entries sorted by id, optionally only the first ``limit``, then optionally only shard
    ``shard`` of ``num_shards`` (`shard_of`); `__getitem__` loads one `Sample`. The shards of a
    selection partition it, so the shards' rows together are exactly the unsharded run's."""
    name = "images"
    task = "none"  # "segmentation", "localization", "parts" or "none"

    def __init__(self, entries: list[Entry], limit: int | None = None, shard: int = 0, num_shards: int = 1):
        if limit is not None and not _whole(limit, 1):
            raise DatasetError(f"dataset.limit={limit!r}: must be a whole number of images >= 1, or null (all)")
        if not _whole(num_shards, 1):
            raise DatasetError(f"dataset.num_shards={num_shards!r}: must be a whole number >= 1 (1: no split)")
        if not _whole(shard, 0) or shard >= num_shards:
            raise DatasetError(f"dataset.shard={shard!r}: must be a whole number from 0 to dataset.num_shards - 1 = "
                               f"{num_shards - 1} (e.g. -m dataset.num_shards={max(num_shards, 2)} "
                               f"'dataset.shard=range({max(num_shards, 2)})')")
        entries = sorted(entries, key=lambda e: e.id)
        if not entries:
            raise self._error("no images listed")
        twins = [a.id for a, b in zip(entries, entries[1:]) if a.id == b.id]
        if twins:
            raise self._error(f"{len(twins) + 1} images have the id {twins[0]!r}")
        self.listed = {e.id: e for e in entries}  # every image, also those past the limit
        self.entries = [e for e in entries[:limit] if num_shards == 1 or shard_of(e.id, num_shards) == shard]
        self.ids = [e.id for e in self.entries]

    ground_truth = True  # False: samples carry the image only (without_ground_truth)

    def without_ground_truth(self) -> "ImageDataset":
        """The same images with no ground truth read or fingerprinted (task=distil's teacher pass)."""
        import copy
        unlabelled = copy.copy(self)
        unlabelled.ground_truth = False
        return unlabelled

    def ground_truth_files(self, entry: Entry) -> list[Path]:
        return [entry.mask] if entry.mask is not None else []

    def fingerprint(self, ids, digest: str = "sha256", truth: bool = True) -> dict[str, str]:
        """Per image id, a digest of what its results depend on: the image file's content, its
        ground-truth files' content and any ground truth held in memory (boxes, keypoints). An id
        not in the listing (past the limit included) maps to None. ``digest``: "sha256" (the whole
        files) or "sampled" (the records of older run directories, deepcut.records). ``truth=False``:
        the digest the same images listed without any ground truth have (a run on the photos
        alone, which evaluate.py may score later against their masks)."""
        of_file = file_digest if digest == "sha256" else sampled_digest
        out = {}
        for sid in ids:
            entry = self.listed.get(sid)
            if entry is None:
                out[sid] = None
                continue
            h = hashlib.sha256()
            for path in [entry.image, *(self.ground_truth_files(entry) if self.ground_truth and truth else [])]:
                try:
                    h.update(of_file(path).encode())
                except OSError:
                    h.update(b"unreadable")
            for array in ((entry.boxes, entry.parts) if truth else (None, None)) if self.ground_truth else ():
                h.update(b"-" if array is None else np.ascontiguousarray(array, np.float32).tobytes())
            out[sid] = h.hexdigest()
        return out

    @property
    def readme(self) -> str:
        return f"datasets/{self.name}/README.md"

    def _error(self, problem: str) -> DatasetError:
        return DatasetError(f"{self.name}: {problem}. See {self.readme}")

    def _folder(self, path: Path) -> Path:
        """``path`` if it is a folder, else an error saying what is there instead."""
        if not path.is_dir():
            raise self._error(f"expected the folder {path}, but {_found(path)}")
        return path

    def _file(self, path: Path) -> Path:
        if not path.is_file():
            raise self._error(f"expected the file {path}, but {_found(path)}")
        return path

    def _stems(self, folder: Path, extensions) -> dict[str, Path]:
        """Files of a folder by stem (the id), for the given extensions (case-insensitive)."""
        files: dict[str, Path] = {}
        for path in sorted(self._folder(folder).iterdir()):
            if path.suffix.lower() in extensions and not path.name.startswith("."):
                if path.stem in files:
                    raise self._error(f"{files[path.stem]} and {path.name} would get the same id")
                files[path.stem] = path
        return files

    def _images(self, folder: Path, extensions) -> dict[str, Path]:
        found = self._stems(folder, extensions)
        if not found:
            raise self._error(f"no {'/'.join(extensions)} images in {folder}; {_listing(folder)}")
        return found

    def _pairs(self, images: Path, masks: Path, image_ext, mask_ext=(".png",)) -> list[Entry]:
        """Images of one folder with the masks of the same stem in another; every image needs one."""
        found = self._images(images, image_ext)
        mask_files = self._stems(masks, mask_ext)
        missing = sorted(found.keys() - mask_files.keys())
        if missing:
            raise self._error(f"{len(missing)} of {len(found)} images in {images} have no mask in {masks} "
                              f"(first: {missing[0]}{mask_ext[0]})")
        return [Entry(stem, path, mask_files[stem]) for stem, path in found.items()]

    def _boxes(self, entry: Entry) -> np.ndarray | None:
        return entry.boxes

    def _instances(self, entry: Entry, stored: tuple[int, int], orientation: int) -> list[dict] | None:
        """Every object's box and mask, upright (a family with instance annotations decodes them)."""
        return None

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int) -> Sample:
        entry = self.entries[i]
        if not self.ground_truth:
            try:
                return Sample(entry.id, str(entry.image), _upright_rgb(entry.image)[0])
            except DatasetError as err:
                raise self._error(str(err)) from None
        try:
            image, orientation, stored = _upright_rgb(entry.image)
            mask = None if entry.mask is None else load_mask(entry.mask, image.size, entry.image)
            boxes, parts = self._boxes(entry), entry.parts
            instances = self._instances(entry, stored, orientation)
        except DatasetError as err:
            raise self._error(str(err)) from None
        if boxes is not None:
            boxes = _orient_boxes(boxes, orientation, stored)
        if parts is not None:
            parts = np.concatenate([_orient_points(parts[:, :2], orientation, stored), parts[:, 2:]], axis=1)
        return Sample(entry.id, str(entry.image), image, mask, boxes, parts, instances)
