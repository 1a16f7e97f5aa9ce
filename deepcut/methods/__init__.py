"""The methods, every one on the same patch features. Importing this package registers each of its
modules' methods (deepcut.registry), as timm's models/__init__ loads its families: adding a method
is one module here plus its configs/method/<name>.yaml.

A peer is one function from the (N, C) patch features of one image (row-major over its (h, w)
patch grid) to a (h, w) LongTensor mask, 0 = background, 1 = foreground:

    method(features, grid, *, seed=0, **params) -> mask

  * deepcut: GNN clustering of the feature graph (Aflalo et al. 2022), `DeepCut`;
  * tokencut: normalised cut on a thresholded cosine graph, seed = largest |eigenvector| (Wang et al. 2022);
  * lost: lowest-degree seed + seed expansion on raw feature correlations (Siméoni et al. 2021);
  * dsm: Fiedler vector of the feature-affinity Laplacian, split at 0 (Melas-Kyriazi et al. 2022);
  * kmeans: k-means on L2-normalised features, non-border clusters = foreground;
  * whole: the whole image as foreground (the trivial baseline);
  * maskcut: up to N normalised cuts, each found object masked out before the next (CutLER's MaskCut,
    Wang et al. 2023): labels 1..n are its objects, for postprocess.instances;
  * coseg: part co-segmentation of a collection of images (Amir et al. 2021: k-means with the elbow rule,
    a saliency vote for the object, k-means parts), `CoSegmentation`.

`seed` is accepted by every method so all are called alike. Tensors in, tensors out: no I/O and
no config; configs/method/<name>.yaml holds each one's parameters.
"""
import importlib
import pkgutil

from deepcut.registry import create_method, method_entry, method_names

for _family in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_family.name}")

# The peers by name (`methods.tokencut(features, grid)`), as the notebook and users call them; each
# import comes after discovery, so the function, not its module, is the package's attribute.
from deepcut.methods.coseg import CoSegmentation  # noqa: E402
from deepcut.methods.deepcut import DeepCut  # noqa: E402
from deepcut.methods.dsm import dsm  # noqa: E402
from deepcut.methods.kmeans import kmeans  # noqa: E402
from deepcut.methods.lost import lost  # noqa: E402
from deepcut.methods.maskcut import maskcut  # noqa: E402
from deepcut.methods.tokencut import tokencut  # noqa: E402
from deepcut.methods.whole import whole  # noqa: E402

__all__ = ["CoSegmentation", "DeepCut", "create_method", "dsm", "kmeans", "lost", "maskcut", "method_entry",
           "method_names", "tokencut", "whole"]
