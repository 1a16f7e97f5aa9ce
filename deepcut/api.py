"""The public Python API: one call from a PIL image to a segmentation.

    import deepcut
    seg = deepcut.create_segmenter("deepcut", loss="cc")
    out = seg(Image.open("photo.jpg"))        # out.labels, out.mask, out.box, out.soft, ...

Its defaults are the Hydra configs' own: `create_segmenter` composes configs/config.yaml with the
same overrides `python run.py` takes, and run.py builds its `Segmenter` from its config the same
way (`segmenter_from_config`), so the two give the same labels for the same image, id and seed.
"""
from __future__ import annotations

from typing import Sequence

from omegaconf import DictConfig

from deepcut.cache import FeatureCache
from deepcut.config import compose_config, listed
from deepcut.methods import create_method
from deepcut.pipeline import Extractor, Segmenter
from deepcut.postprocess import Postprocess
from deepcut.validate import validate


def segmenter_from_config(cfg: DictConfig, cache: FeatureCache | None = None) -> Segmenter:
    """The chain a run config describes (run.py and create_segmenter both build it here)."""
    method = create_method(cfg)
    extractor = Extractor(**cfg.backbone, device=cfg.device, cache=cache, attention=getattr(method, "needs_attention", False))
    return Segmenter(extractor, method, Postprocess(**cfg.postprocess, device=extractor.device.type), seed=cfg.seed,
                     max_pixels=cfg.get("max_pixels"), config=cfg)


def create_segmenter(method: str = "deepcut", *, overrides: Sequence[str] = (), device: str | None = None,
                     seed: int | None = None, cache: bool = False, **choices: str) -> Segmenter:
    """A ready segmenter. ``method``: deepcut, tokencut, lost, dsm, kmeans or whole; ``choices``: an
    option per stage group (``backbone="dino_vits8"``, ``loss="cc"``, ``mode="parts"``, ...);
    ``overrides``: Hydra-style ``"group.key=value"`` strings; ``cache``: reuse backbone features
    through the feature cache (cache.dir). Settings are validated as run.py validates them: a
    ConfigError says which one is wrong and what is allowed."""
    extra = [*([f"device={device}"] if device is not None else []), *([f"seed={seed}"] if seed is not None else [])]
    cfg = compose_config(method, [*listed(overrides), *extra], **choices)
    validate(cfg)
    return segmenter_from_config(cfg, cache=FeatureCache(cfg.cache.dir) if cache else None)
