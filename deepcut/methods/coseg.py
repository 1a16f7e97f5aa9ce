"""Part co-segmentation of Amir et al., "Deep ViT Features as Dense Visual Descriptors" (2021), the
pooled k-means baseline of DeepCut's Table 3, as their part_cosegmentation.py does it (two stages),
on the same features as every method.

Over a collection of images (different grid sizes allowed), descriptors L2-normalised:
  1. clusters: k-means over the pooled descriptors (fitted on every `sample_interval`-th descriptor
     of each image, then every descriptor takes its nearest centre) with 1, 2, ... clusters, up to
     `max_clusters`, stopping at the first count whose mean squared distance is above `elbow` times
     the previous count's (the elbow rule; that count's clustering is kept);
  2. foreground: each image votes for the clusters whose mean saliency over its patches exceeds
     `thresh` (saliency: the last block's CLS attention, averaged over `saliency_heads` and scaled
     to [0, 1] per image); a cluster is salient when at least `votes_percentage` % of the images
     vote for it; the foreground descriptors are those of the salient clusters;
  3. parts: k-means with K = `k` over the pooled foreground descriptors (sampled the same way);
  4. labels: every patch of every image takes the nearest of the K part centres and the
     background (its nearest non-salient cluster centre), as their final assignment does before
     its dense CRF (there is no maintained pydensecrf wheel: the labels stay on the patch grid and
     go through the run's post-processing like every method's).
Parts are numbered by decreasing pooled size, so a label names the same part in every image:
0 = background, 1..k = parts (an image may lack some parts). Their k-means is faiss's (300
iterations, 10 restarts); scikit-learn's k-means with the same counts stands in for it.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from deepcut.errors import ConfigError, is_number, is_whole
from deepcut.registry import method_params, register_method


def _kmeans(x: np.ndarray, sample: np.ndarray, k: int, seed: int, n_init: int):
    """k-means fitted on `sample`'s rows (on all of x's where the sample has fewer than k: a small
    collection) -> (centres (k, C), each row of x's nearest centre, their mean squared distance)."""
    from sklearn.cluster import KMeans  # ~1 s to import: only runs that use k-means pay it

    fitted = sample if len(sample) >= k else x
    centres = KMeans(n_clusters=k, n_init=n_init, max_iter=300, random_state=seed).fit(fitted).cluster_centers_
    d = ((x[:, None, :] - centres[None]) ** 2).sum(-1)
    return centres, d.argmin(1), float(d.min(1).mean())


class CoSegmentation:
    """`coseg.collection([(features (N_i, C), grid_i, attention (heads, N_i)), ...], seeds)` -> one
    (h_i, w_i) label map per image; `coseg(features, grid, seed=...)` cannot vote (one image: it
    needs the attention) and is a collection of one. The k-means seed derives from the
    collection's image seeds as a set, so it does not depend on their order."""

    needs_attention = True  # the Extractor hands each image's CLS attention with its features

    def __init__(self, k: int = 4, elbow: float = 0.975, max_clusters: int = 14, thresh: float = 0.065,
                 votes_percentage: float = 75, sample_interval: int = 100, saliency_heads=None, n_init: int = 10,
                 collection_size: int = 0):
        problems = check_params(dict(k=k, elbow=elbow, max_clusters=max_clusters, thresh=thresh,
                                     votes_percentage=votes_percentage, sample_interval=sample_interval,
                                     saliency_heads=saliency_heads, n_init=n_init, collection_size=collection_size))
        if problems:
            raise ConfigError("\n\n".join(problems))
        self.k, self.elbow, self.max_clusters, self.thresh = k, elbow, max_clusters, thresh
        self.votes_percentage, self.sample_interval, self.n_init = votes_percentage, sample_interval, n_init
        self.saliency_heads = None if saliency_heads is None else list(saliency_heads)
        self.collection_size = collection_size
        self.collects = True  # the Segmenter hands `collection` a whole collection at once

    def __call__(self, features: torch.Tensor, grid: tuple[int, int], attention: torch.Tensor | None = None, *,
                 seed: int = 0) -> torch.Tensor:
        return self.collection([(features, grid, attention)], [seed])[0]

    def saliency(self, attention: torch.Tensor) -> np.ndarray:
        """(heads, N) CLS attention -> (N,) saliency in [0, 1]: the chosen heads' mean, min-max scaled."""
        if attention is None:
            raise ValueError("method=coseg needs each image's CLS attention (the Extractor gives it when the method asks)")
        heads = attention if self.saliency_heads is None else attention[self.saliency_heads]
        s = heads.mean(dim=0).double().cpu().numpy()
        return (s - s.min()) / max(s.max() - s.min(), np.finfo(float).tiny)

    def collection(self, items: list, seeds: list[int]) -> list[torch.Tensor]:
        seed = min(seeds) % 2**31 if seeds else 0
        sizes = [f.shape[0] for f, *_ in items]
        device = items[0][0].device
        descs = [F.normalize(f.detach().double().cpu(), dim=-1).numpy() for f, *_ in items]
        pooled = np.concatenate(descs)
        sample = np.concatenate([d[::self.sample_interval] for d in descs])
        # 1. The elbow rule over the number of clusters.
        previous = None
        for n in range(1, min(self.max_clusters, len(pooled)) + 1):
            centres, ids, sse = _kmeans(pooled, sample, n, seed, self.n_init)
            if previous is not None and sse > self.elbow * previous:
                break
            previous = sse
        # 2. The saliency vote.
        votes = np.zeros(len(centres))
        for image_ids, (_, _, attention) in zip(np.split(ids, np.cumsum(sizes)[:-1]), items):
            salient = self.saliency(attention)
            for c in range(len(centres)):
                inside = image_ids == c
                votes[c] += bool(inside.any() and salient[inside].mean() > self.thresh)
        salient = votes >= math.ceil(len(items) * self.votes_percentage / 100)
        foreground = salient[ids]
        labels = np.zeros(len(pooled), dtype=np.int64)
        if foreground.sum() >= self.k and salient.any():
            # 3. The parts, from every image's foreground descriptors (sampled per image, as theirs).
            fg = [d[m] for d, m in zip(descs, np.split(foreground, np.cumsum(sizes)[:-1]))]
            parts, _, _ = _kmeans(pooled[foreground], np.concatenate([d[::self.sample_interval] for d in fg]),
                                  self.k, seed, self.n_init)
            # 4. Every patch: the nearest part centre, or background if a background centre is nearer.
            to_parts = ((pooled[:, None, :] - parts[None]) ** 2).sum(-1)
            nearest = to_parts.argmin(1)
            if (~salient).any():
                to_background = ((pooled[:, None, :] - centres[~salient][None]) ** 2).sum(-1).min(1)
                on_part = to_parts.min(1) <= to_background
            else:
                on_part = np.ones(len(pooled), dtype=bool)
            order = np.argsort(-np.bincount(nearest[on_part], minlength=self.k), kind="stable")
            rank = np.empty(self.k, dtype=np.int64)
            rank[order] = np.arange(1, self.k + 1)
            labels[on_part] = rank[nearest[on_part]]
        elif salient.any():  # fewer foreground patches than parts: one part
            labels[foreground] = 1
        return [torch.from_numpy(lab).view(grid).to(device) for lab, (_, grid, *_) in
                zip(np.split(labels, np.cumsum(sizes)[:-1]), items)]


def check_params(p: dict) -> list[str]:
    """method=coseg's settings: one paragraph per problem."""
    rules = {
        "k": (lambda v: is_whole(v) and v >= 1, "the number of parts, a whole number >= 1 (Table 3: 4)"),
        "elbow": (lambda v: is_number(v) and 0 < v <= 1, "the elbow rule's ratio, in (0, 1] (theirs: 0.975)"),
        "max_clusters": (lambda v: is_whole(v) and v >= 2, "the most clusters the elbow rule tries, >= 2 (theirs: 14)"),
        "thresh": (lambda v: is_number(v) and 0 <= v <= 1, "the saliency a cluster's patches must exceed, in [0, 1] "
                   "(theirs: 0.065)"),
        "votes_percentage": (lambda v: is_number(v) and 0 < v <= 100, "the share of images that must vote a cluster "
                             "salient, in (0, 100] (theirs: 75)"),
        "sample_interval": (lambda v: is_whole(v) and v >= 1, "k-means is fitted on every n-th descriptor: n >= 1 "
                            "(theirs: 100)"),
        "saliency_heads": (lambda v: v is None or (len(v) > 0 and all(is_whole(h) and h >= 0 for h in v)),
                           "null (every head) or a list of head indices (theirs, for DINO ViT-S/8: [0, 2, 4, 5])"),
        "n_init": (lambda v: is_whole(v) and v >= 1, "k-means restarts, >= 1 (theirs: 10)"),
        "collection_size": (lambda v: is_whole(v) and v >= 0, "images pooled together, a whole number >= 0 "
                            "(0: each batch of backbone.batch_size images)"),
    }
    return [f"method.{key}={p[key]!r}: {allowed}" for key, (ok, allowed) in rules.items() if key in p and not ok(p[key])]


register_method("coseg", build=lambda cfg: CoSegmentation(**method_params(cfg)),
                check=lambda cfg: check_params(method_params(cfg)))(CoSegmentation)
