"""The public Python API: one call from a PIL image to a segmentation.

    import deepcut
    seg = deepcut.create_segmenter("deepcut", loss="cc")
    out = seg(Image.open("photo.jpg"))        # out.labels, out.mask, out.box, out.soft, ...

Its defaults are the Hydra configs' own: `create_segmenter` composes configs/config.yaml with the
same overrides `python run.py` takes, and run.py builds its `Segmenter` from that same config, so
the two give the same labels for the same image, id and seed.
"""
from __future__ import annotations

import inspect
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig
from PIL import Image

from deepcut.cache import FeatureCache
from deepcut.graph import prepare_features
from deepcut.pipeline import Extractor, Postprocess, bound
from deepcut.segment import derive_seed

CONFIGS = Path(__file__).resolve().parent.parent / "configs"

# The config groups of the stages a segmenter is built from (configs/<group>/<name>.yaml).
STAGE_GROUPS = ("backbone", "graph", "gnn", "loss", "optimizer", "mode", "postprocess")


@dataclass
class Segmentation:
    """One image's result. Labels: 0 = background (the border rule), then contiguous cluster ids."""
    labels: torch.Tensor               # (H, W) int64 at image size
    patch_labels: torch.Tensor         # (h, w) int64 on the patch grid, same numbering
    mask: torch.Tensor                 # (H, W) bool foreground, after post-processing
    box: torch.Tensor | None           # (4,) float32 x0, y0, x1, y1 in pixel edges; None: empty mask
    soft: torch.Tensor | None          # (K, h, w) soft assignment S, channel i = label i (DeepCut)
    eigenvector: torch.Tensor | None   # (h, w) the vector TokenCut / DSM cut
    features: torch.Tensor             # (h*w, C) the patch features the method saw
    grid: tuple[int, int]              # (h, w)
    n_clusters: int                    # distinct labels in patch_labels
    time_s: float                      # features + method + post-processing, this image's share


def compose_config(method: str = "deepcut", overrides: Sequence[str] = (), **choices: str) -> DictConfig:
    """The run config `python run.py method=<method> <group>=<choice> ... <overrides>` would use."""
    unknown = sorted(set(choices) - set(STAGE_GROUPS))
    if unknown:
        from deepcut.validate import ConfigError
        raise ConfigError(f"create_segmenter({', '.join(f'{k}=...' for k in unknown)}): not a config group; "
                          f"choose options of {', '.join(STAGE_GROUPS)}, and give other settings as "
                          "overrides=['group.key=value', ...]")
    args = [f"method={method}", *(f"{g}={v}" for g, v in choices.items() if v is not None), *overrides]
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        return compose("config", overrides=args)


def create_segmenter(method: str = "deepcut", *, overrides: Sequence[str] = (), device: str | None = None,
                     seed: int | None = None, cache: bool = False, **choices: str) -> "Segmenter":
    """A ready segmenter. ``method``: deepcut, tokencut, lost, dsm, kmeans or whole; ``choices``: an
    option per stage group (``backbone="dino_vits8"``, ``loss="cc"``, ``mode="parts"``, ...);
    ``overrides``: Hydra-style ``"group.key=value"`` strings. Settings are validated as run.py
    validates them (a ConfigError says which one is wrong and what is allowed)."""
    extra = [*([f"device={device}"] if device is not None else []), *([f"seed={seed}"] if seed is not None else [])]
    cfg = compose_config(method, [*overrides, *extra], **choices)
    from deepcut.validate import validate
    validate(cfg)
    return Segmenter.from_config(cfg, cache=FeatureCache(cfg.cache.dir) if cache else None)


def _center(cfg: DictConfig) -> bool:
    return bool(cfg.graph.center)


class Segmenter:
    """Features -> method -> post-processing for PIL images. Built from a run config, by
    `create_segmenter` or by run.py."""

    def __init__(self, extractor: Extractor, method, post: Postprocess, *, center: bool, seed: int = 0,
                 max_pixels: int | None = None, config: DictConfig | None = None):
        self.extractor, self.method, self.post = extractor, method, post
        self.center, self.seed, self.max_pixels, self.config = center, seed, max_pixels, config

    @classmethod
    def from_config(cls, cfg: DictConfig, cache: FeatureCache | None = None) -> "Segmenter":
        return cls(Extractor(**cfg.backbone, device=cfg.device, cache=cache), instantiate(cfg.method),
                   Postprocess(**cfg.postprocess), center=_center(cfg), seed=cfg.seed,
                   max_pixels=cfg.get("max_pixels"), config=cfg)

    # -- the stages, for a batch (run.py calls these on what its DataLoader decoded)

    def features(self, tensors: list[torch.Tensor]) -> list:
        """Preprocessed image tensors -> (features, grid) per image, centred where the config
        centres (every method sees the same features; DeepCut centres inside its graph stage)."""
        out = []
        for f, grid in self.extractor(tensors):
            if not torch.isfinite(f).all():
                raise FloatingPointError("non-finite backbone features (NaN or Inf)")
            if self.center and not hasattr(self.method, "batch"):
                f = prepare_features(f, center=True)
            out.append((f, grid))
        return out

    def cluster(self, features: list, seeds: list[int], details: bool = False) -> list:
        """(features, grid) per image -> (h, w) patch labels per image (with details: (labels,
        soft, eigenvector)). DeepCut trains same-grid images as one batch."""
        if hasattr(self.method, "batch"):
            out: list = [None] * len(features)
            by_grid: dict[tuple, list[int]] = {}
            for i, (_, grid) in enumerate(features):
                by_grid.setdefault(grid, []).append(i)
            for grid, idx in by_grid.items():
                stacked = torch.stack([features[i][0] for i in idx])
                if details:
                    for i, (labels, soft) in zip(idx, self.method.batch(stacked, grid, [seeds[i] for i in idx], soft=True)):
                        out[i] = (labels, soft, None)
                else:
                    for i, labels in zip(idx, self.method.batch(stacked, grid, [seeds[i] for i in idx])):
                        out[i] = labels
            return out
        if details:
            return [self._peer_details(f, grid, s) for (f, grid), s in zip(features, seeds)]
        return [self.method(f, grid, seed=s) for (f, grid), s in zip(features, seeds)]

    def _peer_details(self, features, grid, seed):
        if "details" not in inspect.signature(self.method).parameters:  # nothing to show but its mask
            return self.method(features, grid, seed=seed), None, None
        labels, maps = self.method(features, grid, seed=seed, details=True)
        return labels, None, maps.get("eigenvector")

    # -- one call from PIL images

    def __call__(self, images: Image.Image | Sequence[Image.Image], ids: str | Sequence[str] | None = None):
        """A PIL image (or a list) -> Segmentation (or a list). Each image's GNN seed derives from
        (seed, id) as in run.py; ``id`` defaults to the file name's stem (e.g. "chelsea"), so an
        image opened from a dataset folder gets the seed its run.py row got."""
        single = isinstance(images, Image.Image)
        images = [images] if single else list(images)
        ids = [ids] if isinstance(ids, str) else list(ids) if ids is not None else [_default_id(im) for im in images]
        if len(ids) != len(images):
            raise ValueError(f"{len(ids)} ids for {len(images)} images")
        start = time.perf_counter()
        images = [bound_image(_rgb(im), self.max_pixels) for im in images]
        features = self.features([self.extractor.preprocess(im) for im in images])
        clustered = self.cluster(features, [derive_seed(self.seed, i) for i in ids], details=True)
        out = []
        for image, (f, grid), (patch, soft, vector) in zip(images, features, clustered):
            labels, mask, box = self.post(patch, image)
            out.append(Segmentation(labels=labels, patch_labels=patch.cpu(), mask=mask, box=box,
                                    soft=None if soft is None else soft.cpu(),
                                    eigenvector=None if vector is None else vector.cpu(),
                                    features=f.cpu(), grid=grid, n_clusters=int(patch.unique().numel()), time_s=0.0))
        for o in out:
            o.time_s = (time.perf_counter() - start) / len(out)
        return out[0] if single else out


def _default_id(image: Image.Image) -> str:
    name = getattr(image, "filename", "") or ""
    return Path(name).stem if name else "image"


def _rgb(image: Image.Image) -> Image.Image:
    """As the dataset loaders read files: upright (EXIF orientation), 8-bit, RGB."""
    from deepcut.datasets import _orient, _orientation, _to_8bit
    orientation = _orientation(image)
    image = _to_8bit(image)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return _orient(image, orientation).convert("RGB")


def bound_image(image: Image.Image, max_pixels: int | None) -> Image.Image:
    """The image downscaled to at most ``max_pixels`` pixels, as run.py bounds dataset images."""
    from deepcut.datasets import Sample
    return bound(Sample(id="", path="", image=image), max_pixels)[0].image
