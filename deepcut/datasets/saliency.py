"""Single-object saliency benchmarks: ECSSD, DUTS-TE and DUT-OMRON (an image folder and a mask
folder of the same stems, `_Saliency`) and SOD (jpg or png images, mostly 1-bit masks).
"""
from __future__ import annotations

from pathlib import Path

from deepcut.datasets.base import ImageDataset


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
