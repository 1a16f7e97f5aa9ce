"""Benchmark datasets in their official layouts, one `Sample` per image.

The code lives in `deepcut.datasets.base`; this package re-exports its public names, so that
`from deepcut.datasets import ECSSD` and the configs' `_target_: deepcut.datasets.ECSSD` keep working.
"""
from deepcut.datasets.base import (
    COCO20k, CUB, DUTOMRON, DUTSTE, ECSSD, IMAGE_EXTENSIONS, SOD, VOC, DatasetError, Demo, Entry, Folder,
    ImageDataset, Sample, file_digest, load_image, load_mask, shard_of, to_rgb,
)

__all__ = [
    "COCO20k", "CUB", "DUTOMRON", "DUTSTE", "ECSSD", "IMAGE_EXTENSIONS", "SOD", "VOC", "DatasetError", "Demo",
    "Entry", "Folder", "ImageDataset", "Sample", "file_digest", "load_image", "load_mask", "shard_of", "to_rgb",
]
