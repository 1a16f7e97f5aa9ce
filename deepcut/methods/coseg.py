"""Co-part segmentation by pooled k-means (Amir et al., "Deep ViT Features as Dense Visual
Descriptors", 2021): the baseline of DeepCut's Table 3, run on the same features as every method.

Over a collection of images (different grid sizes allowed):
  1. foreground: k-means with K = 2 over the pooled, L2-normalised features of the collection; the
     cluster covering most of the collection's grid borders is the background (the border rule,
     applied to the collection so that "foreground" means the same cluster in every image);
  2. parts: k-means with K = `k` over the pooled foreground features; parts numbered by decreasing
     pooled size, so a label names the same cluster in every image of the collection.
Labels: 0 = background, 1..k = parts (an image may lack some parts: its labels need not be contiguous).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from deepcut.masks import border_counts
from deepcut.registry import method_params, register_method
from deepcut.errors import ConfigError


def _kmeans(x: torch.Tensor, k: int, seed: int, n_init: int) -> torch.Tensor:
    """(N, C) -> (N,) cluster ids of k-means (k-means++ init, best of n_init) on L2-normalised rows."""
    from sklearn.cluster import KMeans  # ~1 s to import: only runs that use k-means pay it

    f = F.normalize(x.detach().double().cpu(), dim=-1).numpy()
    return torch.from_numpy(KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit_predict(f)).long()


class CoSegmentation:
    """`coseg.collection([(features (N_i, C), grid_i), ...], seeds)` -> one (h_i, w_i) label map per
    image; `coseg(features, grid, seed=...)` is a collection of one image. The k-means seed derives
    from the collection's image seeds as a set, so it does not depend on their order."""

    def __init__(self, k: int = 4, n_init: int = 10, collection_size: int = 0):
        if not isinstance(k, int) or k < 1:
            raise ConfigError(f"method.k={k!r}: co-segmentation needs a whole number of parts >= 1")
        if not isinstance(collection_size, int) or collection_size < 0:
            raise ConfigError(f"method.collection_size={collection_size!r}: a whole number of images >= 0 "
                              "(0: each batch of backbone.batch_size images)")
        self.k, self.n_init, self.collection_size = k, n_init, collection_size
        self.collects = True  # the Segmenter hands `collection` a whole collection at once

    def __call__(self, features: torch.Tensor, grid: tuple[int, int], *, seed: int = 0) -> torch.Tensor:
        return self.collection([(features, grid)], [seed])[0]

    def collection(self, items: list[tuple[torch.Tensor, tuple[int, int]]], seeds: list[int]) -> list[torch.Tensor]:
        seed = min(seeds) % 2**31 if seeds else 0
        sizes = [f.shape[0] for f, _ in items]
        pooled = torch.cat([f for f, _ in items])
        device = pooled.device
        ids = _kmeans(pooled, 2, seed, self.n_init)
        per_image = ids.split(sizes)
        border = sum(border_counts(i.view(grid), 2) for i, (_, grid) in zip(per_image, items))
        size = torch.bincount(ids, minlength=2)
        background = int(torch.argmax(border * (size.sum() + 1) + size))  # ties: the larger one
        foreground = ids != background
        labels = torch.zeros_like(ids)
        if int(foreground.sum()) >= self.k:
            parts = _kmeans(pooled[foreground], self.k, seed, self.n_init)
            order = torch.argsort(torch.bincount(parts, minlength=self.k), descending=True, stable=True)
            rank = torch.empty_like(order)
            rank[order] = torch.arange(1, self.k + 1)
            labels[foreground] = rank[parts]
        else:  # fewer foreground patches than parts: one part
            labels[foreground] = 1
        return [lab.view(grid).to(device) for lab, (_, grid) in zip(labels.split(sizes), items)]


register_method("coseg", build=lambda cfg: CoSegmentation(**method_params(cfg)))(CoSegmentation)
