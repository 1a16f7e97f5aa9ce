"""Image and mask files: decoding (a broken file fails when read, by name), EXIF orientation, 16-bit
to 8-bit, RGB conversion, the ground-truth mask rule (grey > 127) and content digests. The one
module of the package that reads image files; `DatasetError` lives here because reading raises it.
"""
from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".gif")


class DatasetError(ValueError):
    """A dataset file or folder is missing, unreadable or inconsistent; the message says which."""



_ORIENTATION_TAG = 0x0112
# EXIF orientation -> the transpose that shows the image upright (the table of PIL's exif_transpose).
_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
              4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
              6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90}


# The largest image decoded (then shrunk to max_pixels by the pipeline): PIL's own bomb limit
# (179 Mpx) refused a 16000 x 12000 photo that max_pixels promises to shrink; 1 Gpx is 3 GB of RGB.
MAX_DECODE_PIXELS = 1 << 30


def _read(path) -> Image.Image:
    """Open and decode now, so that an empty, truncated or non-image file fails here, by name."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise DatasetError(f"{path}: empty file (0 bytes)")
    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None if limit is None else max(limit, MAX_DECODE_PIXELS // 2)  # PIL raises at 2x
    try:
        image = Image.open(path)
        image.load()
    except Image.DecompressionBombError:
        raise DatasetError(f"{path}: larger than {MAX_DECODE_PIXELS / 1e6:g} megapixels, the most that is decoded "
                           "(images up to that are shrunk to max_pixels); shrink it first") from None
    except (OSError, SyntaxError, ValueError) as err:  # PIL's errors for unknown, broken and truncated files
        raise DatasetError(f"{path}: not a readable image ({err})") from err
    finally:
        Image.MAX_IMAGE_PIXELS = limit
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


def as_image(image) -> Image.Image:
    """What a user hands the API as one image -> upright 8-bit RGB: a PIL image, a file path, a
    NumPy array (H, W), (H, W, 3) or (H, W, 4), uint8 or float in [0, 1], or a torch tensor laid
    out as torchvision's (C, H, W) or as (H, W, C). Anything else, or an empty image, is a ValueError."""
    import os

    if isinstance(image, (str, os.PathLike)):
        return load_image(image)
    if not isinstance(image, Image.Image):
        if hasattr(image, "detach"):  # a torch tensor: channels first (torchvision) unless last
            a = image.detach().cpu()
            a = a.permute(1, 2, 0) if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[2] not in (1, 3, 4) else a
            image = a.numpy()
        if not isinstance(image, np.ndarray):
            raise ValueError(f"an image is a PIL image, a file path, a NumPy array or a torch tensor, not "
                             f"{type(image).__name__!r}")
        a = image[..., 0] if image.ndim == 3 and image.shape[2] == 1 else image
        if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
            raise ValueError(f"an image array is (H, W), (H, W, 3) or (H, W, 4); this one is {image.shape}")
        if a.dtype != np.uint8:
            a = np.clip(np.nan_to_num(a.astype(np.float64)) * (255 if a.max(initial=0) <= 1 else 1), 0, 255).round().astype(np.uint8)
        if a.size == 0:
            raise ValueError(f"the image is empty ({a.shape[1] if a.ndim > 1 else 0} x {a.shape[0]} pixels)")
        image = Image.fromarray(np.ascontiguousarray(a))
    if image.width == 0 or image.height == 0:
        raise ValueError(f"the image is empty ({image.width} x {image.height} pixels)")
    return to_rgb(image)


def _upright_rgb(path) -> tuple[Image.Image, int, tuple[int, int]]:
    """The RGB upright image, its EXIF orientation and the stored (unrotated) size."""
    image = _read(path)
    return to_rgb(image), _orientation(image), image.size


def load_image(path) -> Image.Image:
    """Any image file (grey, RGBA, palette, CMYK, 16-bit, 1-bit) -> RGB, EXIF orientation applied."""
    return _upright_rgb(path)[0]


NOISY_BINARY_MAX = 8  # a mask whose grey values never pass this is a 0/1 mask (noisy if > 1)


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
    # thresholding it at 127 would read every such mask as empty. So is one whose values stay this
    # low but are not only 0 and 1: a 0/1 mask saved with lossy compression (JPEG), said once per file.
    grey = np.asarray(_to_8bit(mask).convert("L"))
    top = int(grey.max())
    if 1 < top <= NOISY_BINARY_MAX:
        warnings.warn(f"{path}: mask values 0..{top} on the 0-255 scale look like a 0/1 mask with compression "
                      "noise; read as binary (value >= 1 is foreground). Save masks as 0/255 PNG to silence this",
                      stacklevel=2)
    return grey > 0 if top <= NOISY_BINARY_MAX else grey > 127


def file_digest(path) -> str:
    """The SHA-256 of a file's whole content, so an edit anywhere in it changes the digest; computed
    once per file and kept by (path, size, mtime) in the digest cache (`DIGESTS`), so verifying 20k
    images on resume reads none of them again. A file copied or moved elsewhere keeps its digest."""
    return DIGESTS.get(Path(path))


def sampled_digest(path, chunk: int = 1 << 16) -> str:
    """The digest of run directories recorded before whole-file digests (dataset.json without a
    "digest" key): size, first and last ``chunk`` bytes. Only to verify those."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        h.update(str(size).encode())
        h.update(f.read(chunk))
        if size > 2 * chunk:
            f.seek(-chunk, os.SEEK_END)
        h.update(f.read(chunk))
    return h.hexdigest()


class DigestCache:
    """Whole-file digests by (absolute path, size, mtime in ns), in memory and in an SQLite file of
    the project's cache folder shared by processes (a sweep's jobs); any trouble with that file
    only means computing the digest again."""

    def __init__(self):
        self.memo: dict[tuple, str] = {}
        self.db = None

    def _connect(self):
        if self.db is None:
            import sqlite3

            from deepcut.files import cache_dir
            try:
                cache_dir().mkdir(parents=True, exist_ok=True)
                self.db = sqlite3.connect(str(cache_dir() / "digests.sqlite"), timeout=30, isolation_level=None)
                # A cache: no fsync per insert (a lost row is only a digest computed again).
                self.db.execute("PRAGMA synchronous=OFF")
                self.db.execute("CREATE TABLE IF NOT EXISTS digests (path TEXT, size INTEGER, mtime INTEGER, "
                                "digest TEXT, PRIMARY KEY (path, size, mtime))")
            except Exception:  # noqa: BLE001 - no shared cache: digests are computed per process
                self.db = False
        return self.db or None

    def get(self, path: Path) -> str:
        st = os.stat(path)
        key = (str(Path(path).absolute()), st.st_size, st.st_mtime_ns)
        if key in self.memo:
            return self.memo[key]
        db = self._connect()
        row = None
        if db is not None:
            try:
                row = db.execute("SELECT digest FROM digests WHERE path=? AND size=? AND mtime=?", key).fetchone()
            except Exception:  # noqa: BLE001
                row = None
        if row is None:
            with open(path, "rb") as f:
                digest = hashlib.file_digest(f, "sha256").hexdigest()
            if db is not None:
                try:
                    db.execute("INSERT OR REPLACE INTO digests VALUES (?, ?, ?, ?)", (*key, digest))
                except Exception:  # noqa: BLE001
                    pass
        else:
            digest = row[0]
        self.memo[key] = digest
        return digest

    def __getstate__(self):  # DataLoader workers start with an empty memo and their own connection
        return {"memo": {}, "db": None}


DIGESTS = DigestCache()
