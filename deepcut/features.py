"""Stage 1b: images -> patch features of one facet (key, query, value or token) of one block.

Follows the DINO-ViT-features extractor the paper uses: hook the block's qkv projection, keep the
chosen facet with all heads concatenated, drop the CLS and register tokens.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

FACETS = ("key", "query", "value", "token")


def resize(image: Image.Image, resolution: int, patch: int, mode: str = "square") -> Image.Image:
    """Resize with LANCZOS (paper: 280x280). `short_side` keeps the aspect ratio (long side at most
    4x the resolution); both sides are rounded down to a multiple of the patch size, so the ViT
    sees whole patches."""
    if mode == "square":
        h = w = resolution
    elif mode == "short_side":
        # The long side is capped at 4x the resolution: a 1x2000 strip must not become 16k patches.
        scale = min(resolution / min(image.size), 4 * resolution / max(image.size))
        w, h = round(image.width * scale), round(image.height * scale)
    else:
        raise ValueError(f"backbone.resize={mode!r}: use 'square' or 'short_side'")
    w, h = max(patch, w // patch * patch), max(patch, h // patch * patch)
    return image.resize((w, h), Image.LANCZOS)


def to_tensor(image: Image.Image, mean, std) -> torch.Tensor:
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
    return (x - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]


def grid_size(height: int, width: int, patch: int, stride: int) -> tuple[int, int]:
    """Patch grid of a conv with kernel `patch` and stride `stride` (no padding)."""
    return (height - patch) // stride + 1, (width - patch) // stride + 1


@torch.no_grad()
def extract(model: torch.nn.Module, images: torch.Tensor, facet: str = "key") -> torch.Tensor:
    """(B, 3, H, W) normalised images -> (B, h*w, C) patch features of the model's last block
    (create_backbone has already cut the model after the requested layer)."""
    if facet not in FACETS:
        raise ValueError(f"backbone.facet={facet!r}: use one of {FACETS}")
    block = model.blocks[-1]
    captured = {}
    if facet == "token":
        handle = block.register_forward_hook(lambda m, i, o: captured.setdefault("x", o))
    else:
        handle = block.attn.qkv.register_forward_hook(lambda m, i, o: captured.setdefault("x", o))
    try:
        model.forward_features(images)
    finally:
        handle.remove()
    x = captured["x"]
    if facet != "token":
        b, t, _ = x.shape  # qkv output is (B, T, 3*C) laid out as (3, heads, head_dim)
        x = x.reshape(b, t, 3, -1)[:, :, ("query", "key", "value").index(facet)]
    return x[:, model.num_prefix_tokens:].float()


def center(features: torch.Tensor) -> torch.Tensor:
    """(..., N, C) -> each image's features minus its mean patch feature. Backbones whose features
    share a large common component (DINOv2 keys: pairwise cosine >= 0.55 within an image) otherwise
    give a nearly uniform affinity, for DeepCut and its peers alike (backbone.center)."""
    return features - features.mean(dim=-2, keepdim=True)


def log_bin(features: torch.Tensor, grid: tuple[int, int], hierarchy: int = 2) -> torch.Tensor:
    """(B, h*w, C) patch features -> (B, h*w, C * (1 + 8 * hierarchy)) log-binned descriptors
    (Amir et al., "Deep ViT Features as Dense Visual Descriptors", the `log_bin` of their extractor
    and of the original DeepCut code). Level k averages the features over 3^k x 3^k windows and
    takes them at the 3 x 3 neighbours 3^k patches away (level 0: the patch and its 8 neighbours;
    higher levels: the 8 neighbours), so each patch also describes its surroundings at growing
    scales. Neighbours beyond the grid take the nearest edge window, as in the reference."""
    b, n, c = features.shape
    h, w = grid
    x = features.transpose(1, 2).reshape(b, c, h, w)
    bins = []
    for k in range(hierarchy):
        size = 3 ** k
        pooled = F.avg_pool2d(x, size, stride=1, padding=size // 2, count_include_pad=False)
        for di in (-size, 0, size):
            rows = (torch.arange(h, device=x.device) + di).clamp(0, h - 1)
            for dj in (-size, 0, size):
                if k and di == 0 and dj == 0:  # above level 0 the reference leaves the centre out
                    continue
                cols = (torch.arange(w, device=x.device) + dj).clamp(0, w - 1)
                bins.append(pooled[:, :, rows][:, :, :, cols])
    return torch.cat(bins, dim=1).flatten(2).transpose(1, 2)
