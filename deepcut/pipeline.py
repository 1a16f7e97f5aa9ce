"""The stages chained: features -> method -> mask/box (-> metrics for dataset samples).

`Segmenter` owns the chain: `seg(images)` for PIL images (the public API, deepcut/api.py), and
`seg.process(batch)` for what run.py's DataLoader decoded (`Loaded`), where an image that cannot
be processed becomes an error row instead of stopping the run. Plain Python over tensors."""
from __future__ import annotations

import dataclasses
import inspect
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import timm.data
import torch
from PIL import Image
from torch.utils.data import Dataset

from deepcut import metrics
from deepcut.backbone import create_backbone
from deepcut.cache import FeatureCache, model_fingerprint, tensor_digest
from deepcut.features import center, extract, grid_size, log_bin, resize, to_tensor
from deepcut.instances import Instances
from deepcut.masks import to_size
from deepcut.postprocess import Postprocess
from deepcut.errors import one_paragraph
from deepcut.seeds import derive_seed


def resolve_device(device: str = "auto") -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else torch.device(device)


class Extractor:
    """Stage 1: PIL images -> per-image (h*w, C) features and the (h, w) grid."""

    def __init__(self, name: str, weights: str, facet: str, layer: int | list[int], stride: int | None, resolution: int,
                 resize: str, batch_size: int, device: str = "auto", precision: str = "fp32",
                 checkpoint_key: str = "student", model_kwargs: dict | None = None, center: bool = False,
                 log_bin: int = 0, cache: FeatureCache | None = None, attention: bool = False):
        """Settings as in configs/backbone/*.yaml, which hold the defaults (deepcut.create_segmenter).
        attention: also give each image's (heads, h*w) CLS attention of the last block, for a
        method that asks for it (`needs_attention`): items are then (features, grid, attention)."""
        self.device = resolve_device(device)
        self.attention = attention
        self.model = create_backbone(name, weights, stride, layer, checkpoint_key, attention,
                                     **(model_kwargs or {})).to(self.device)
        self.layers = self.model.feature_blocks  # the blocks whose features are extracted, side by side
        self.patch = self.model.patch_embed.patch_size[0]
        self.stride = stride or self.patch
        if resolution < self.patch:
            raise ValueError(f"backbone.resolution={resolution} is smaller than one {self.patch}px patch")
        data = timm.data.resolve_data_config({}, model=self.model)  # mean/std come with the weights' config
        self.mean, self.std = data["mean"], data["std"]
        self.facet, self.resolution, self.resize_mode = facet, resolution, resize
        self.center, self.log_bin = center, log_bin
        self.batch_size = batch_size
        self.autocast = precision == "bf16"
        self.tf32 = precision == "tf32"  # set for this extractor's forwards only, not process-wide
        self.cache = cache
        if cache is not None:
            # Several blocks come from the same (untruncated) parameters as the last one alone: say which.
            blocks = {"layers": self.layers} if len(self.layers) > 1 else {}
            self.fingerprint = model_fingerprint(self.model, facet=facet, precision=precision, **blocks)

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return to_tensor(resize(image, self.resolution, self.patch, self.resize_mode), self.mean, self.std)

    def __call__(self, tensors: list[torch.Tensor]) -> list[tuple[torch.Tensor, tuple[int, int]]]:
        """Same-size images go through the ViT together, `batch_size` at a time; cached ones don't."""
        out: list = [None] * len(tensors)
        keys = [self.fingerprint + tensor_digest(t) for t in tensors] if self.cache else []
        by_shape: dict[tuple, list[int]] = {}
        for i, t in enumerate(tensors):
            grid = grid_size(t.shape[1], t.shape[2], self.patch, self.stride)
            cached = self.cache and not self.attention  # the cache holds features only
            hit = self.cache.get(keys[i], (grid[0] * grid[1], self.model.embed_dim * len(self.layers))) if cached else None
            if hit is not None:
                out[i] = (hit.to(self.device), grid)
            else:
                by_shape.setdefault(tuple(t.shape), []).append(i)
        for shape, idx in by_shape.items():
            grid = grid_size(shape[1], shape[2], self.patch, self.stride)
            for start in range(0, len(idx), self.batch_size):
                chunk = idx[start:start + self.batch_size]
                x = torch.stack([tensors[i] for i in chunk]).to(self.device, non_blocking=True)
                tf32, torch.backends.cuda.matmul.allow_tf32 = torch.backends.cuda.matmul.allow_tf32, self.tf32
                try:
                    with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
                        feats = extract(self.model, x, self.facet, self.layers, self.attention)
                finally:
                    torch.backends.cuda.matmul.allow_tf32 = tf32
                feats, maps = feats if self.attention else (feats, [None] * len(chunk))
                for i, f, m in zip(chunk, feats, maps):
                    out[i] = (f, grid) if m is None else (f, grid, m)
                    if self.cache:
                        self.cache.put(keys[i], f)
        # Feature preparation, for every method alike, after the cache (its entries serve every setting).
        if self.center:
            out = [(center(f), grid, *rest) for f, grid, *rest in out]
        if self.log_bin:
            out = [(log_bin(f[None], grid, self.log_bin)[0], grid, *rest) for f, grid, *rest in out]
        return out


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
    mask, boxes, parts, objects = sample.mask, sample.boxes, sample.parts, sample.instances
    if mask is not None:
        mask = np.asarray(Image.fromarray(mask).resize(size, Image.NEAREST))
    if objects is not None:
        objects = [{**o, "box": o["box"] * np.array([sx, sy, sx, sy], np.float32),
                    "mask": None if o["mask"] is None else np.asarray(Image.fromarray(o["mask"]).resize(size, Image.NEAREST))}
                   for o in objects]
    if boxes is not None:
        boxes = boxes * np.array([sx, sy, sx, sy], np.float32)
    if parts is not None:
        parts = np.concatenate([parts[:, :2] * np.array([sx, sy], np.float32), parts[:, 2:]], axis=1)
    image = sample.image.resize(size, Image.BILINEAR, reducing_gap=3.0)
    return (dataclasses.replace(sample, image=image, mask=mask, boxes=boxes, parts=parts, instances=objects),
            f"downscaled from {w}x{h} to {size[0]}x{size[1]} (max_pixels={max_pixels})")


def image_metrics(sample, labels: torch.Tensor, mask: torch.Tensor, box) -> dict:
    """Per-image metrics for whatever ground truth the sample has."""
    row = {}
    if sample.mask is not None:
        row.update(metrics.mask_metrics(mask.numpy(), sample.mask))
    if sample.boxes is not None:
        row["corloc"] = metrics.corloc_hit(None if box is None else box.numpy(), sample.boxes)
    if sample.parts is not None:
        gt, pred = metrics.keypoint_labels(labels.numpy(), sample.parts)
        row["kp_gt"], row["kp_pred"] = " ".join(map(str, gt)), " ".join(map(str, pred))
    return row


def instance_record(sample, found: Instances) -> dict:
    """What instances/<id>.json keeps of an image: its proposals in COCO's results form and, for
    the summary's AP/AR, its class-agnostic ground truth (None: it has none)."""
    from deepcut import instances
    return {"id": sample.id, "image_id": instances.coco_id(sample.id), "size": [sample.image.height, sample.image.width],
            "detections": instances.detections(found), "truth": instances.truth(sample)}


# ---------------------------------------------------------------- the chain


@dataclass
class Segmentation:
    """One image's result. Labels: 0 = background (mode.background's rule), then contiguous cluster ids."""
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
    instances: Instances | None = None  # object proposals (postprocess.instances > 0), at image size


class Segmenter:
    """Features -> method -> post-processing. Built from a run config by deepcut.create_segmenter
    (Python) and by run.py, so both run the same chain with the same settings."""

    def __init__(self, extractor: Extractor, method, post: Postprocess, *, seed: int = 0,
                 max_pixels: int | None = None, config=None):
        self.extractor, self.method, self.post = extractor, method, post
        self.seed, self.max_pixels, self.config = seed, max_pixels, config

    @staticmethod
    def prepare(features: torch.Tensor, grid: tuple[int, int], *attention) -> tuple:
        """Non-finite features fail the image, whatever the method."""
        if not torch.isfinite(features).all():
            raise FloatingPointError("non-finite backbone features (NaN or Inf)")
        return features, grid, *attention

    @property
    def batch_size(self) -> int:
        """Images per batch of run.py's loader: a collection method's collection size, else the backbone's."""
        return getattr(self.method, "collection_size", 0) or self.extractor.batch_size

    def cluster(self, features: list, seeds: list[int], details: bool = False) -> list:
        """(features, grid) per image -> (h, w) patch labels per image; with details, (labels,
        soft, eigenvector). DeepCut trains same-grid images as one batch; a method in collection
        mode (`collects`) gets all the images together, whatever their grids."""
        if getattr(self.method, "collects", False):
            return [(lab, None, None) if details else lab for lab in self.method.collection(features, seeds)]
        if not hasattr(self.method, "batch"):
            return [self._peer(f, grid, s, details) for (f, grid, *_), s in zip(features, seeds)]
        out: list = [None] * len(features)
        by_grid: dict[tuple, list[int]] = {}
        for i, (_, grid, *_) in enumerate(features):
            by_grid.setdefault(grid, []).append(i)
        for grid, idx in by_grid.items():
            stacked = torch.stack([features[i][0] for i in idx])
            results = self.method.batch(stacked, grid, [seeds[i] for i in idx], soft=details)
            for i, result in zip(idx, results):
                out[i] = (*result, None) if details else result
        return out

    def _peer(self, features, grid, seed, details):
        if not details or "details" not in inspect.signature(self.method).parameters:
            labels = self.method(features, grid, seed=seed)
            return (labels, None, None) if details else labels
        labels, maps = self.method(features, grid, seed=seed, details=True)
        return labels, None, maps.get("eigenvector")

    def __call__(self, images, ids: str | Sequence[str] | None = None):
        """An image (PIL, a path, a NumPy array or a tensor: deepcut.datasets.io.as_image) or a list
        of them -> Segmentation (or a list). Each image's GNN seed derives from (seed, id) as in
        run.py; ``id`` defaults to the file name's stem (e.g. "chelsea")."""
        from deepcut.datasets.io import as_image
        single = not isinstance(images, (list, tuple))
        images = [images] if single else list(images)
        ids = [ids] if isinstance(ids, str) else list(ids) if ids is not None else [_default_id(im) for im in images]
        if len(ids) != len(images):
            raise ValueError(f"{len(ids)} ids for {len(images)} images")
        start = time.perf_counter()
        originals = [as_image(im) for im in images]
        images = [bound_image(im, self.max_pixels) for im in originals]
        features = [self.prepare(*f) for f in self.extractor([self.extractor.preprocess(im) for im in images])]
        clustered = self.cluster(features, [derive_seed(self.seed, i) for i in ids], details=True)
        out = []
        for original, image, (f, grid, *_), (patch, soft, vector) in zip(originals, images, features, clustered):
            labels, mask, box = self.post(patch, image)
            if image.size != original.size:  # shrunk to max_pixels for memory: back to the photo's coordinates
                labels, mask, box = to_size(labels, mask, box, (original.height, original.width))
            out.append(Segmentation(labels=labels, patch_labels=patch.cpu(), mask=mask, box=box,
                                    instances=self.post.propose(labels),
                                    soft=None if soft is None else soft.cpu(),
                                    eigenvector=None if vector is None else vector.cpu(),
                                    features=f.cpu(), grid=grid, n_clusters=int(patch.unique().numel()), time_s=0.0))
        for o in out:
            o.time_s = (time.perf_counter() - start) / len(out)
        return out[0] if single else out

    # -- over a dataset (run.py)

    def loading(self, dataset, indices: list[int]) -> "Loaded":
        return Loaded(dataset, indices, self.extractor.preprocess, self.max_pixels)

    def process(self, batch: list) -> Iterator[tuple[dict, tuple]]:
        """Yield (row, (image, labels, mask, box)) per image of a batch `Loaded` gave; an image that
        cannot be processed (unreadable, non-finite features, a failing method) yields (error row, ()).
        time_s: the image's share of the batch's features and method, plus its own post-processing
        and metrics; failed images take no share. The same as `finish(cluster_batch(batch))`: run.py
        may post-process one batch in a thread while the next is on the backbone."""
        yield from self.finish(self.cluster_batch(batch))

    def cluster_batch(self, batch: list, maps: bool = False) -> "Clustered":
        """The first half of `process`: features and the method for the batch's readable images;
        with ``maps``, each image's labels come with its soft assignment and eigenvector (or None)."""
        errors = [{"id": sid, "error": error} for sid, _, error, _ in batch if error is not None]
        good = [b for b in batch if b[2] is None]
        start = time.perf_counter()
        samples, notes = [b[0] for b in good], [b[3] for b in good]
        features = isolate(self.extractor, [b[1] for b in good])
        features = [f if isinstance(f, Exception) else _attempt(self.prepare, *f) for f in features]
        seeds = [derive_seed(self.seed, s.id) for s in samples]
        ok = [i for i, f in enumerate(features) if not isinstance(f, Exception)]
        labels: list = list(features)  # the exceptions stay in place
        cluster = (lambda f, s: self.cluster(f, s, details=True)) if maps else self.cluster
        for i, lab in zip(ok, isolate(cluster, [features[i] for i in ok], [seeds[i] for i in ok])):
            labels[i] = lab
        n_ok = sum(not isinstance(lab, Exception) for lab in labels)
        return Clustered(errors, samples, notes, labels, (time.perf_counter() - start) / max(n_ok, 1))

    def finish(self, clustered: "Clustered") -> list[tuple[dict, tuple]]:
        """The second half of `process`: post-processing and metrics, image by image."""
        out = [(row, ()) for row in clustered.errors]
        for sample, lab, note in zip(clustered.samples, clustered.labels, clustered.notes):
            extra = {"note": note} if note else {}
            own = time.perf_counter()
            try:
                if isinstance(lab, Exception):
                    raise lab
                lab, soft, vector = lab if isinstance(lab, tuple) else (lab, None, None)
                full, mask, box = self.post(lab, sample.image)
                # Every patch in one cluster: a legitimate (empty or full) mask, evaluated and counted.
                found = self.post.propose(full)
                row = {"id": sample.id, **extra, "degenerate": bool(lab.unique().numel() == 1),
                       **image_metrics(sample, full, mask, box)}
                if found is not None:
                    row["n_instances"] = len(found)
                if asked := getattr(self.method, "n_parts", None):  # fewer parts than K: said, not hidden
                    row["missing_parts"] = max(0, asked - int((full.unique() > 0).sum()))
                row["time_s"] = clustered.shared_s + time.perf_counter() - own
                maps = {k: v.cpu().numpy() for k, v in (("soft", soft), ("eigenvector", vector)) if v is not None}
                out.append((row, (sample.image, full, mask, box, found,
                                   None if found is None else instance_record(sample, found), maps or None)))
            except Exception as e:  # noqa: BLE001 - recorded in the row, the run goes on
                out.append(({"id": sample.id, "error": reason(e), **extra}, ()))
        return out


@dataclass
class Clustered:
    """A batch between the method and post-processing: error rows, then per readable image its
    sample, note and patch labels (or the exception that failed it); shared_s: each image's share
    of the batch's feature and method time."""
    errors: list[dict]
    samples: list
    notes: list
    labels: list
    shared_s: float


def _attempt(fn, *args):
    try:
        return fn(*args)
    except Exception as e:  # noqa: BLE001 - the image's error, in place of its result
        return e


def _default_id(image) -> str:
    """A file's stem (of a path, or of the file a PIL image was opened from), else "image"."""
    name = image if isinstance(image, (str, os.PathLike)) else getattr(image, "filename", "") or ""
    return Path(name).stem if name else "image"


def bound_image(image: Image.Image, max_pixels: int | None) -> Image.Image:
    """The image downscaled to at most ``max_pixels`` pixels, as `bound` does for dataset samples."""
    from deepcut.datasets import Sample
    return bound(Sample(id="", path="", image=image), max_pixels)[0].image


def reason(error: BaseException) -> str:
    """An error as one line for the results' error column."""
    return f"{type(error).__name__}: {one_paragraph(error, 500)}".replace("\n", " ")


class Loaded(Dataset):
    """Decodes and preprocesses in DataLoader workers; a bad file becomes a row, not a crash.
    Items: (sample, tensor, None, note) or (id, None, error, None)."""

    def __init__(self, dataset, indices, preprocess, max_pixels: int | None = None):
        self.dataset, self.indices, self.preprocess, self.max_pixels = dataset, indices, preprocess, max_pixels

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        index = self.indices[i]
        try:
            sample, note = bound(self.dataset[index], self.max_pixels)
            return sample, self.preprocess(sample.image), None, note
        except Exception as e:  # noqa: BLE001 - any unreadable input is recorded and skipped
            return self.dataset.ids[index], None, reason(e), None


def isolate(fn, *lists) -> list:
    """``fn(*lists)`` (a list, one item per element); if that fails, ``fn`` per element, so only
    the elements that fail get their exception in place of a result."""
    if not lists[0]:
        return []
    try:
        return list(fn(*lists))
    except Exception:  # noqa: BLE001 - find the element that breaks the batch
        out = []
        for j in range(len(lists[0])):
            try:
                out.append(fn(*[items[j:j + 1] for items in lists])[0])
            except Exception as e:  # noqa: BLE001
                out.append(e)
        return out
