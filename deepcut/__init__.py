"""deepcut: unsupervised segmentation by GNN clustering of self-supervised ViT features.

    import deepcut
    seg = deepcut.create_segmenter()          # the configs' defaults, as `python run.py`
    out = seg(PIL.Image.open("photo.jpg"))    # out.labels, out.mask, out.box, out.soft
"""
from deepcut.api import compose_config, create_segmenter, segmenter_from_config
from deepcut.pipeline import Segmentation, Segmenter

__all__ = ["Segmentation", "Segmenter", "compose_config", "create_segmenter", "segmenter_from_config"]
