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
def extract(model: torch.nn.Module, images: torch.Tensor, facet: str = "key", layers: list[int] | None = None,
            attention: bool = False):
    """(B, 3, H, W) normalised images -> (B, h*w, C) patch features of the model's last block
    (create_backbone has already cut the model after the requested layer), or of the blocks
    `layers` (indices from 0) concatenated in that order: hypercolumns (Hariharan et al. 2015),
    e.g. a middle block's part-level keys beside the last block's object-level ones. With
    `attention`, also (B, heads, h*w): the last block's attention from the CLS token to each patch,
    per head (the saliency of Amir et al.'s co-segmentation and of DINO's attention maps)."""
    if facet not in FACETS:
        raise ValueError(f"backbone.facet={facet!r}: use one of {FACETS}")
    layers = [len(model.blocks) - 1] if layers is None else layers
    captured: dict[int, torch.Tensor] = {}
    handles = []
    for i in layers:
        module = model.blocks[i] if facet == "token" else model.blocks[i].attn.qkv
        handles.append(module.register_forward_hook(lambda m, inp, out, i=i: captured.setdefault(i, out)))
    if attention:
        handles.append(model.blocks[-1].attn.qkv.register_forward_hook(lambda m, inp, out: captured.setdefault("qkv", out)))
    try:
        model.forward_features(images)
    finally:
        for handle in handles:
            handle.remove()
    out = []
    for i in layers:
        x = captured[i]
        if facet != "token":
            b, t, _ = x.shape  # qkv output is (B, T, 3*C) laid out as (3, heads, head_dim)
            x = x.reshape(b, t, 3, -1)[:, :, ("query", "key", "value").index(facet)]
        out.append(x[:, model.num_prefix_tokens:].float())
    features = torch.cat(out, dim=-1) if len(out) > 1 else out[0]
    return (features, cls_attention(model.blocks[-1].attn, captured["qkv"], model.num_prefix_tokens)) if attention else features


def cls_attention(attn: torch.nn.Module, qkv: torch.Tensor, prefix: int) -> torch.Tensor:
    """A timm attention module's (B, T, 3C) qkv output -> (B, heads, T - prefix): softmax(q k^T /
    sqrt(d)) of the CLS query (token 0) over all tokens, read at the patches."""
    b, t, _ = qkv.shape
    q, k, _ = qkv.reshape(b, t, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4)  # (B, heads, T, d) each
    q, k = attn.q_norm(q), attn.k_norm(k)
    weights = ((q[:, :, :1] * attn.scale) @ k.transpose(-1, -2)).softmax(dim=-1)  # (B, heads, 1, T)
    return weights[:, :, 0, prefix:].float()


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
