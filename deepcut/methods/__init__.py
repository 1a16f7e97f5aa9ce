"""Peer methods, run on the same patch features as DeepCut.

Each is one function from the (N, C) patch features of one image (row-major over its (h, w) patch
grid) to a (h, w) LongTensor mask, 0 = background, 1 = foreground:

    method(features, grid, *, seed=0, **params) -> mask

  * tokencut: normalised cut on a thresholded cosine graph, seed = largest |eigenvector| (Wang et al. 2022);
  * lost: lowest-degree seed + seed expansion on raw feature correlations (Siméoni et al. 2021);
  * dsm: Fiedler vector of the feature-affinity Laplacian, split at 0 (Melas-Kyriazi et al. 2022);
  * kmeans: k-means on L2-normalised features, non-border clusters = foreground;
  * whole: the whole image as foreground (the trivial baseline).

`seed` is accepted by every method so all are called alike; only kmeans uses it. Tensors in,
tensors out: no I/O and no config (configs/method/*.yaml are Hydra partials of these functions).
"""
from deepcut.methods.dsm import dsm
from deepcut.methods.kmeans import kmeans
from deepcut.methods.lost import lost
from deepcut.methods.tokencut import tokencut
from deepcut.methods.whole import whole

__all__ = ["dsm", "kmeans", "lost", "tokencut", "whole"]
