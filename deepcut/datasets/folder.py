"""Datasets without an official layout: `Folder`, the user's own images (with masks when there
are any), and `Demo`, a few photos shipped inside scikit-image, so a first run needs no download.
"""
from __future__ import annotations

import glob
import logging
from pathlib import Path

from deepcut.datasets.base import Entry, ImageDataset
from deepcut.datasets.io import IMAGE_EXTENSIONS

log = logging.getLogger("deepcut")

class Folder(ImageDataset):
    """Your own images: ``root`` with images/ and optionally masks/ (same stems), or ``path``, a
    folder of images, one image file or a glob pattern ('photos/*.jpg'). Segmentation when masks/
    exists, otherwise no ground truth."""
    name = "folder"

    def __init__(self, root=None, path=None, limit: int | None = None, shard: int = 0, num_shards: int = 1):
        if path is not None and (Path(path).is_file() or glob.has_magic(str(path))):
            super().__init__(self._files(str(path)), limit, shard, num_shards)
            return
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

    def _files(self, path: str) -> list[Entry]:
        """One image file, or the image files a glob pattern matches, each its stem as id."""
        files = [Path(path)] if Path(path).is_file() else [Path(p) for p in sorted(glob.glob(path, recursive=True))]
        images = [f for f in files if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS]
        if not images:
            what = f"{path} is not an image file" if files else f"the pattern {path} matches no file"
            raise self._error(f"dataset.path: {what}; give a folder of images, an image file or a glob pattern "
                              f"of them ({'/'.join(IMAGE_EXTENSIONS)})")
        by_stem: dict[str, Path] = {}
        for f in images:
            if f.stem in by_stem:
                raise self._error(f"dataset.path={path}: {by_stem[f.stem]} and {f} would get the same id")
            by_stem[f.stem] = f
        return [Entry(stem, f) for stem, f in by_stem.items()]


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
