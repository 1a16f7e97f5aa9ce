"""The stages chained for a batch of images: features -> method -> mask/box -> metrics.
Plain Python over tensors; run.py (Hydra) and the benchmark build the pieces and call these."""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field

import numpy as np
import timm.data
import torch
from PIL import Image

from deepcut import metrics
from deepcut.backbone import create_backbone
from deepcut.cache import FeatureCache, model_fingerprint, tensor_digest
from deepcut.features import extract, grid_size, resize, to_tensor
from deepcut.masks import largest_component, mask_to_box, upsample_labels


def resolve_device(device: str = "auto") -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else torch.device(device)


class Extractor:
    """Stage 1: PIL images -> per-image (h*w, C) features and the (h, w) grid."""

    def __init__(self, name: str, weights: str = "hub", facet: str = "key", layer: int = -1,
                 stride: int | None = None, resolution: int = 280, resize: str = "square",
                 batch_size: int = 8, device: str = "auto", precision: str = "fp32",
                 checkpoint_key: str = "student", model_kwargs: dict | None = None,
                 cache: FeatureCache | None = None):
        self.device = resolve_device(device)
        self.model = create_backbone(name, weights, stride, layer, checkpoint_key, **(model_kwargs or {})).to(self.device)
        self.patch = self.model.patch_embed.patch_size[0]
        self.stride = stride or self.patch
        if resolution < self.patch:
            raise ValueError(f"backbone.resolution={resolution} is smaller than one {self.patch}px patch")
        data = timm.data.resolve_data_config({}, model=self.model)  # mean/std come with the weights' config
        self.mean, self.std = data["mean"], data["std"]
        self.facet, self.resolution, self.resize_mode = facet, resolution, resize
        self.batch_size = batch_size
        self.autocast = precision == "bf16"
        if precision == "tf32":
            torch.backends.cuda.matmul.allow_tf32 = True
        self.cache = cache
        if cache is not None:
            self.fingerprint = model_fingerprint(self.model, facet=facet, precision=precision)

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return to_tensor(resize(image, self.resolution, self.patch, self.resize_mode), self.mean, self.std)

    def __call__(self, tensors: list[torch.Tensor]) -> list[tuple[torch.Tensor, tuple[int, int]]]:
        """Same-size images go through the ViT together, `batch_size` at a time; cached ones don't."""
        out: list = [None] * len(tensors)
        keys = [self.fingerprint + tensor_digest(t) for t in tensors] if self.cache else []
        by_shape: dict[tuple, list[int]] = {}
        for i, t in enumerate(tensors):
            grid = grid_size(t.shape[1], t.shape[2], self.patch, self.stride)
            hit = self.cache.get(keys[i]) if self.cache else None
            if hit is not None:
                out[i] = (hit.to(self.device), grid)
            else:
                by_shape.setdefault(tuple(t.shape), []).append(i)
        for shape, idx in by_shape.items():
            grid = grid_size(shape[1], shape[2], self.patch, self.stride)
            for start in range(0, len(idx), self.batch_size):
                chunk = idx[start:start + self.batch_size]
                x = torch.stack([tensors[i] for i in chunk]).to(self.device, non_blocking=True)
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
                    feats = extract(self.model, x, self.facet)
                for i, f in zip(chunk, feats):
                    out[i] = (f, grid)
                    if self.cache:
                        self.cache.put(keys[i], f)
        return out


@dataclass
class Postprocess:
    """Stage 4: patch labels -> full-size labels, foreground mask and box.

    largest_component keeps the foreground's largest connected patch region (TokenCut/LOST do);
    bilateral refines the mask on the image (Barron & Poole 2016; the paper used none)."""
    largest_component: bool = False
    bilateral: bool = False
    bilateral_params: dict = field(default_factory=dict)

    def __call__(self, labels: torch.Tensor, image: Image.Image):
        labels = labels.cpu()
        if self.largest_component:
            labels = torch.where(largest_component(labels > 0), labels, 0)
        full = upsample_labels(labels, (image.height, image.width))
        mask = full > 0
        if self.bilateral:
            from deepcut.bilateral import refine_mask
            mask = torch.from_numpy(refine_mask(np.asarray(image), mask.numpy(), **self.bilateral_params))
        return full, mask, mask_to_box(mask)


def bound(sample, max_pixels: int | None):
    """A sample whose image has more than ``max_pixels`` pixels, downscaled (ground truth too) so
    that post-processing and metrics at full size stay within memory; plus a note saying so.
    Decoding itself is bounded by PIL's decompression-bomb limit (~179 Mpx raises)."""
    w, h = sample.image.size
    if not max_pixels or w * h <= max_pixels:
        return sample, None
    scale = math.sqrt(max_pixels / (w * h))
    size = (max(1, int(w * scale)), max(1, int(h * scale)))
    sx, sy = size[0] / w, size[1] / h
    mask, boxes, parts = sample.mask, sample.boxes, sample.parts
    if mask is not None:
        mask = np.asarray(Image.fromarray(mask).resize(size, Image.NEAREST))
    if boxes is not None:
        boxes = boxes * np.array([sx, sy, sx, sy], np.float32)
    if parts is not None:
        parts = np.concatenate([parts[:, :2] * np.array([sx, sy], np.float32), parts[:, 2:]], axis=1)
    image = sample.image.resize(size, Image.BILINEAR, reducing_gap=3.0)
    return (dataclasses.replace(sample, image=image, mask=mask, boxes=boxes, parts=parts),
            f"downscaled from {w}x{h} to {size[0]}x{size[1]} (max_pixels={max_pixels})")


def run_method(method, features: list[tuple[torch.Tensor, tuple[int, int]]], seeds: list[int]) -> list[torch.Tensor]:
    """Call a method on every image; methods with a `batch` (DeepCut) train same-grid images together."""
    if not hasattr(method, "batch"):
        return [method(f, grid, seed=s) for (f, grid), s in zip(features, seeds)]
    out: list = [None] * len(features)
    by_grid: dict[tuple, list[int]] = {}
    for i, (f, grid) in enumerate(features):
        by_grid.setdefault(grid, []).append(i)
    for grid, idx in by_grid.items():
        for i, labels in zip(idx, method.batch(torch.stack([features[i][0] for i in idx]), grid, [seeds[i] for i in idx])):
            out[i] = labels
    return out


def image_metrics(sample, labels: torch.Tensor, mask: torch.Tensor, box) -> dict:
    """Per-image metrics for whatever ground truth the sample has."""
    row = {}
    if sample.mask is not None:
        pred = mask.numpy()
        row["iou"] = metrics.iou(pred, sample.mask)
        row["acc"] = metrics.pixel_accuracy(pred, sample.mask)
        # A binary mask's precision/recall curve is flat: its Fβ is the image's term of maxFβ.
        p, r = metrics.f_beta_curves(pred.astype(np.float32), sample.mask, thresholds=1)
        row["f_beta"] = float(metrics.f_beta(p, r)[0])
    if sample.boxes is not None:
        row["corloc"] = metrics.corloc_hit(None if box is None else box.numpy(), sample.boxes)
    if sample.parts is not None:
        gt, pred = metrics.keypoint_labels(labels.numpy(), sample.parts)
        row["kp_gt"], row["kp_pred"] = " ".join(map(str, gt)), " ".join(map(str, pred))
    return row


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start
