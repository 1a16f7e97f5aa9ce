"""deepcut: unsupervised segmentation by GNN clustering of self-supervised ViT features.

    import deepcut
    seg = deepcut.create_segmenter()          # the configs' defaults, as `python run.py`
    out = seg(PIL.Image.open("photo.jpg"))    # out.labels, out.mask, out.box, out.soft
"""
from deepcut.api import Segmentation, Segmenter, compose_config, create_segmenter

__all__ = ["Segmentation", "Segmenter", "compose_config", "create_segmenter"]
