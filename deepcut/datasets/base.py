"""Benchmark datasets in their official layouts, one `Sample` per image.

Listing (which images, where their ground truth is) happens when a dataset is built and only reads
directory listings and index files; decoding happens in `__getitem__`, i.e. in DataLoader workers.
Images come out as RGB with their EXIF orientation applied. Ground truth is kept in the same frame:
masks, boxes and keypoints are drawn on the stored pixels (the reference codebases read images
without EXIF rotation), so the image's rotation is applied to them too.

Where each dataset comes from and how to lay it out: datasets/<name>/README.md.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import logging
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from deepcut.metrics import voc_box_to_edges

log = logging.getLogger("deepcut")

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".gif")


class DatasetError(ValueError):
    """A dataset file or folder is missing, unreadable or inconsistent; the message says which."""


@dataclass
class Sample:
    id: str                            # unique and filesystem-safe ('__' stands for '/')
    path: str                          # the image file
    image: Image.Image                 # RGB, EXIF orientation applied
    mask: np.ndarray | None = None     # bool (H, W), same size as image
    boxes: np.ndarray | None = None    # float32 (M, 4): x0, y0, x1, y1 in pixel edges (x1, y1 exclusive)
    parts: np.ndarray | None = None    # float32 (P, 3): x, y, part_id of the visible keypoints


# ---------------------------------------------------------------- files

_ORIENTATION_TAG = 0x0112
# EXIF orientation -> the transpose that shows the image upright (the table of PIL's exif_transpose).
_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
              4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
              6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90}


def _read(path) -> Image.Image:
    """Open and decode now, so that an empty, truncated or non-image file fails here, by name."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise DatasetError(f"{path}: empty file (0 bytes)")
    try:
        image = Image.open(path)
        image.load()
    except (OSError, SyntaxError, ValueError) as err:  # PIL's errors for unknown, broken and truncated files
        raise DatasetError(f"{path}: not a readable image ({err})") from err
    return image


def _orientation(image: Image.Image) -> int:
    value = image.getexif().get(_ORIENTATION_TAG, 1)
    return value if value in _TRANSPOSE else 1


def _orient(image: Image.Image, orientation: int) -> Image.Image:
    return image.transpose(_TRANSPOSE[orientation]) if orientation != 1 else image


def _orient_points(xy: np.ndarray, orientation: int, size: tuple[int, int]) -> np.ndarray:
    """(N, 2) x, y on the stored pixels -> the same points on the upright image (edge coordinates)."""
    w, h = size
    x, y = xy[:, 0], xy[:, 1]
    moved = {1: (x, y), 2: (w - x, y), 3: (w - x, h - y), 4: (x, h - y),
             5: (y, x), 6: (h - y, x), 7: (h - y, w - x), 8: (y, w - x)}[orientation]
    return np.stack(moved, axis=1).astype(np.float32)


def _orient_boxes(boxes: np.ndarray, orientation: int, size: tuple[int, int]) -> np.ndarray:
    a, b = _orient_points(boxes[:, :2], orientation, size), _orient_points(boxes[:, 2:], orientation, size)
    return np.concatenate([np.minimum(a, b), np.maximum(a, b)], axis=1)  # corners may swap


def _to_8bit(image: Image.Image) -> Image.Image:
    """16/32-bit integer images -> 'L' by rescaling; PIL's convert would clip everything above 255.
    A file that only uses 0-255 holds 8-bit data in a wider container and is kept as is."""
    if not image.mode.startswith("I"):
        return image
    values = np.asarray(image, dtype=np.float64)
    if values.max() > 255:
        values = values / 257.0  # 65535 -> 255
    return Image.fromarray(np.clip(values.round(), 0, 255).astype(np.uint8))


def to_rgb(image: Image.Image) -> Image.Image:
    """Any decoded image (grey, RGBA, palette, CMYK, 16-bit, 1-bit) -> upright 8-bit RGB, as every
    loader (and the Python API) reads images."""
    orientation = _orientation(image)
    image = _to_8bit(image)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")  # what PIL asks for before dropping a palette's transparency
    return _orient(image, orientation).convert("RGB")


def _upright_rgb(path) -> tuple[Image.Image, int, tuple[int, int]]:
    """The RGB upright image, its EXIF orientation and the stored (unrotated) size."""
    image = _read(path)
    return to_rgb(image), _orientation(image), image.size


def load_image(path) -> Image.Image:
    """Any image file (grey, RGBA, palette, CMYK, 16-bit, 1-bit) -> RGB, EXIF orientation applied."""
    return _upright_rgb(path)[0]


def load_mask(path, size: tuple[int, int] | None = None, image_path=None) -> np.ndarray:
    """A ground-truth mask file -> bool (H, W): grey value > 127 on the 0-255 scale.

    ``image_path``: the image the mask belongs to. A mask stored at the image's unrotated size gets
    the image's EXIF rotation (a mask with its own orientation tag follows that tag instead).
    ``size``: the (W, H) the mask must have; defaults to the upright size of ``image_path``.
    """
    mask = _read(path)
    own = _orientation(mask)
    if own != 1:
        mask = _orient(mask, own)
    elif image_path is not None:
        with Image.open(image_path) as image:
            stored, orientation = image.size, _orientation(image)
        if mask.size == stored:
            mask = _orient(mask, orientation)
        if size is None:
            size = stored[::-1] if orientation >= 5 else stored  # 5-8 swap width and height
    if size is not None and mask.size != tuple(size):
        against = f"its image {image_path}" if image_path is not None else "the image"
        raise DatasetError(f"{path}: mask is {mask.size[0]}x{mask.size[1]} (width x height) but {against} "
                           f"is {size[0]}x{size[1]}")
    # Mode '1' becomes 0/255 through 'L'; a grey mask stored as 0/1 (not 0/255) is binary too:
    # thresholding it at 127 would read every such mask as empty.
    grey = np.asarray(_to_8bit(mask).convert("L"))
    return grey > 0 if grey.max() == 1 else grey > 127


def file_digest(path, chunk: int = 1 << 16) -> str:
    """A content digest of a file that costs at most two reads of ``chunk`` bytes: its size, its
    first and its last ``chunk`` bytes (the whole file when smaller). Images and masks of the same
    name but different content differ in it; a file copied or moved elsewhere keeps it."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        h.update(str(size).encode())
        h.update(f.read(chunk))
        if size > 2 * chunk:
            f.seek(-chunk, os.SEEK_END)
        h.update(f.read(chunk))
    return h.hexdigest()


def _listing(folder: Path) -> str:
    names = sorted(p.name + "/" * p.is_dir() for p in folder.iterdir())
    if not names:
        return f"{folder.resolve()} is empty"
    more = f", ... ({len(names)} entries)" if len(names) > 12 else ""
    return f"{folder.resolve()} holds: {', '.join(names[:12])}{more}"


def _found(path: Path) -> str:
    """What is there instead of ``path``, for error messages: the nearest existing folder's listing."""
    folder = path.parent
    while not folder.is_dir():
        folder = folder.parent
    return _listing(folder)


# ---------------------------------------------------------------- base class


@dataclass(frozen=True)
class Entry:
    """One listed image and its ground truth; boxes and parts are on the stored (unrotated) pixels."""
    id: str
    image: Path
    mask: Path | None = None
    boxes: np.ndarray | None = None
    parts: np.ndarray | None = None


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

    def ground_truth_files(self, entry: Entry) -> list[Path]:
        return [entry.mask] if entry.mask is not None else []

    def fingerprint(self, ids) -> dict[str, str]:
        """Per image id, a digest of what its results depend on: the image file's content, its
        ground-truth files' content and any ground truth held in memory (boxes, keypoints). An id
        not in the listing (past the limit included) maps to None."""
        out = {}
        for sid in ids:
            entry = self.listed.get(sid)
            if entry is None:
                out[sid] = None
                continue
            h = hashlib.sha256()
            for path in [entry.image, *self.ground_truth_files(entry)]:
                try:
                    h.update(file_digest(path).encode())
                except OSError:
                    h.update(b"unreadable")
            for array in (entry.boxes, entry.parts):
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

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int) -> Sample:
        entry = self.entries[i]
        try:
            image, orientation, stored = _upright_rgb(entry.image)
            mask = None if entry.mask is None else load_mask(entry.mask, image.size, entry.image)
            boxes, parts = self._boxes(entry), entry.parts
        except DatasetError as err:
            raise self._error(str(err)) from None
        if boxes is not None:
            boxes = _orient_boxes(boxes, orientation, stored)
        if parts is not None:
            parts = np.concatenate([_orient_points(parts[:, :2], orientation, stored), parts[:, 2:]], axis=1)
        return Sample(entry.id, str(entry.image), image, mask, boxes, parts)


# ---------------------------------------------------------------- single-object segmentation


class _Saliency(ImageDataset):
    """root/<image_dir>/*.jpg with root/<mask_dir>/*.png of the same stem."""
    task = "segmentation"
    image_dir = mask_dir = ""

    def __init__(self, root, limit: int | None = None, shard: int = 0, num_shards: int = 1):
        root = self._folder(Path(root))
        entries = self._pairs(root / self.image_dir, root / self.mask_dir, (".jpg",))
        super().__init__(entries, limit, shard, num_shards)


class ECSSD(_Saliency):
    """ECSSD (Yan et al. 2013): 1000 images."""
    name, image_dir, mask_dir = "ecssd", "images", "ground_truth_mask"


class DUTSTE(_Saliency):
    """DUTS test split (Wang et al. 2017): 5019 images."""
    name, image_dir, mask_dir = "duts_te", "DUTS-TE-Image", "DUTS-TE-Mask"


class DUTOMRON(_Saliency):
    """DUT-OMRON (Yang et al. 2013): 5168 images."""
    name, image_dir, mask_dir = "dut_omron", "DUT-OMRON-image", "pixelwiseGT-new-PNG"


class SOD(ImageDataset):
    """SOD (Movahedi & Elder 2010): 300 BSDS300 photos; images jpg or png, masks png (mostly 1-bit)."""
    name, task = "sod", "segmentation"

    def __init__(self, root, limit: int | None = None, shard: int = 0, num_shards: int = 1):
        root = self._folder(Path(root))
        entries = self._pairs(root / "images", root / "masks", (".jpg", ".jpeg", ".png"))
        super().__init__(entries, limit, shard, num_shards)


class Folder(ImageDataset):
    """Your own images: ``root`` with images/ and optionally masks/ (same stems), or ``path``, a
    folder of images. Segmentation when masks/ exists, otherwise no ground truth."""
    name = "folder"

    def __init__(self, root=None, path=None, limit: int | None = None, shard: int = 0, num_shards: int = 1):
        if path is not None:
            images, masks = Path(path), Path(path) / "masks"
            if masks.is_dir():  # the README's layout inside the folder given: its masks are the ground truth
                log.info("dataset.path=%s: using the masks in %s", path, masks)
            else:
                masks = None
        elif root is not None:
            images, masks = Path(root) / "images", Path(root) / "masks"
            masks = masks if masks.is_dir() else None
        else:
            raise self._error("set dataset.path (a folder of images) or dataset.root (with images/ and masks/)")
        if masks is None:
            entries = [Entry(stem, p) for stem, p in self._images(images, IMAGE_EXTENSIONS).items()]
        else:
            self.task = "segmentation"
            entries = self._pairs(images, masks, IMAGE_EXTENSIONS, IMAGE_EXTENSIONS)
        super().__init__(entries, limit, shard, num_shards)


class Demo(ImageDataset):
    """Real photos inside scikit-image's wheel (no download), one clear object each."""
    name = "demo"
    FILES = {"astronaut": "astronaut.png", "chelsea": "chelsea.png", "coffee": "coffee.png",
             "rocket": "rocket.jpg", "motorcycle": "motorcycle_left.png"}

    def __init__(self, limit: int | None = None, shard: int = 0, num_shards: int = 1):
        import skimage.data  # only the demo needs scikit-image

        folder = Path(skimage.data.__file__).parent
        entries = [Entry(name, self._file(folder / file)) for name, file in self.FILES.items()]
        super().__init__(entries, limit, shard, num_shards)


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
        rows = [line.split() for line in self._file(base / "images.txt").read_text().splitlines() if line.strip()]
        files = {int(image_id): rel for image_id, rel in rows}
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
        if self.crop == "none":
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
        try:
            return np.array(self._file(path).read_text().split(), dtype=np.float64).reshape(-1, columns)
        except ValueError:
            raise self._error(f"{path}: expected {columns} numbers on every line") from None

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


# ---------------------------------------------------------------- object localisation


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
    one non-crowd box. Ids are the 12-digit COCO image id in both layouts.
    """
    name, task = "coco20k", "localization"

    def __init__(self, root, filenames=None, limit: int | None = None, shard: int = 0, num_shards: int = 1):
        from pycocotools.coco import COCO  # only this dataset needs it

        root = self._folder(Path(root))
        layouts = [(root / f"train{y}", root / "annotations" / f"instances_train{y}.json") for y in (2014, 2017)]
        complete = [(i, a) for i, a in layouts if i.is_dir() and a.is_file()]
        if not complete:
            raise self._error("expected train2014/ with annotations/instances_train2014.json (or the 2017 pair), "
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
                entries.append(Entry(f"{i:012d}", images / coco.imgs[i]["file_name"],
                                     boxes=np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)))
        super().__init__(entries, limit, shard, num_shards)
