"""deepcut: unsupervised segmentation by GNN clustering of self-supervised ViT features.

    import deepcut
    seg = deepcut.create_segmenter()          # the configs' defaults, as `python run.py`
    out = seg(PIL.Image.open("photo.jpg"))    # out.labels, out.mask, out.box, out.soft

The API is imported on first use, so `import deepcut.<stage>` stays light (no timm, no W&B).
"""
import importlib

_API = {"create_segmenter": "deepcut.api", "compose_config": "deepcut.config", "segmenter_from_config": "deepcut.api",
        "Segmenter": "deepcut.pipeline", "Segmentation": "deepcut.pipeline", "ConfigError": "deepcut.errors"}

__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'deepcut' has no attribute {name!r}")
