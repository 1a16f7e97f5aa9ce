"""Benchmark datasets in their official layouts, one `Sample` per image.

Listing (which images, where their ground truth is) happens when a dataset is built and only reads
directory listings and index files; decoding happens in `__getitem__`, i.e. in DataLoader workers.
Images come out as RGB with their EXIF orientation applied. Ground truth is kept in the same frame:
masks, boxes and keypoints are drawn on the stored pixels (the reference codebases read images
without EXIF rotation), so the image's rotation is applied to them too.

Modules: `io` (image and mask files), `base` (`ImageDataset`, `Entry`, `Sample`, sharding) and one
per family: `saliency` (ECSSD, DUTS-TE, DUT-OMRON, SOD), `folder` (Folder, Demo), `cub`, `voc` and
`coco` (COCO20k). Every public name is re-exported here, so `from deepcut.datasets import ECSSD` and
the configs' `_target_: deepcut.datasets.ECSSD` do not depend on that layout.

Where each dataset comes from and how to lay it out: datasets/<name>/README.md.
"""
from deepcut.datasets.base import Entry, ImageDataset, Sample, shard_of
from deepcut.datasets.coco import COCO20k
from deepcut.datasets.cub import CUB
from deepcut.datasets.folder import Demo, Folder
from deepcut.datasets.io import (
    IMAGE_EXTENSIONS,
    DatasetError,
    file_digest,
    load_image,
    load_mask,
    to_rgb,
)
from deepcut.datasets.saliency import DUTOMRON, DUTSTE, ECSSD, SOD
from deepcut.datasets.voc import VOC

__all__ = [
    "CUB",
    "DUTOMRON",
    "DUTSTE",
    "ECSSD",
    "IMAGE_EXTENSIONS",
    "SOD",
    "VOC",
    "COCO20k",
    "DatasetError",
    "Demo",
    "Entry",
    "Folder",
    "ImageDataset",
    "Sample",
    "file_digest",
    "load_image",
    "load_mask",
    "shard_of",
    "to_rgb",
]
