"""Peer methods, run on the same patch features as DeepCut.

Each is one function from the (N, C) patch features of one image (row-major over its (h, w) patch
grid) to a (h, w) LongTensor mask, 0 = background, 1 = foreground:

    method(features, grid, *, seed=0, **params) -> mask

  * tokencut: normalised cut on a thresholded cosine graph, seed = largest |eigenvector| (Wang et al. 2022);
  * lost: lowest-degree seed + seed expansion on raw feature correlations (Siméoni et al. 2021);
  * dsm: Fiedler vector of the feature-affinity Laplacian, split at 0 (Melas-Kyriazi et al. 2022);
  * kmeans: k-means on L2-normalised features, non-border clusters = foreground;
  * whole: the whole image as foreground (the trivial baseline);
  * coseg: pooled k-means parts over a collection of images (Amir et al. 2021), `CoSegmentation`.

`seed` is accepted by every method so all are called alike; only kmeans uses it. Tensors in,
tensors out: no I/O and no config. Each is registered under its name (deepcut.registry), and
configs/method/<name>.yaml holds its parameters; DeepCut is registered here, built from the
groups of its stages.
"""
from omegaconf import DictConfig, OmegaConf

from deepcut.methods.coseg import CoSegmentation
from deepcut.methods.dsm import dsm
from deepcut.methods.kmeans import kmeans
from deepcut.methods.lost import lost
from deepcut.methods.tokencut import tokencut
from deepcut.methods.whole import whole
from deepcut.registry import METHOD_GROUPS, register_method
from deepcut.segment import DeepCut


def build_deepcut(cfg: DictConfig) -> DeepCut:
    """DeepCut from the groups of its stages: graph, gnn, loss (objective), optimizer, mode."""
    group = lambda name: OmegaConf.to_container(cfg[name], resolve=True)  # noqa: E731
    return DeepCut(loss=cfg.loss.name, k=cfg.loss.k, ortho_weight=cfg.loss.ortho_weight,
                   mode=cfg.mode.name, background=cfg.mode.background, split_background=cfg.mode.split_background,
                   background_k=cfg.mode.background_k, collection_size=cfg.mode.collection_size, seed=cfg.seed,
                   graph=group("graph"), gnn=group("gnn"), optimisation=group("optimizer"))


register_method("deepcut", groups=METHOD_GROUPS, build=build_deepcut)(DeepCut)

__all__ = ["CoSegmentation", "dsm", "kmeans", "lost", "tokencut", "whole", "build_deepcut"]
