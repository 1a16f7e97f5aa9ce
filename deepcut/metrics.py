"""The field's metrics, computed as the reference codebases compute them.

Single-object segmentation follows TokenCut's ``unsupervised_saliency_detection/metric.py`` (the same
code as Deep Spectral Methods' ``object-segmentation/metrics.py``), localisation follows LOST's
CorLoc, part segmentation follows Choudhury et al. 2021's CUB notebook. Masks and scores are numpy
arrays or CPU tensors; every function is pure.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from deepcut.masks import nearest_foreground


def _mask(x) -> np.ndarray:
    # TokenCut binarises both prediction and ground truth with `> 0.5` (0.5 itself is background).
    return np.asarray(x) > 0.5


# ---------------------------------------------------------------- single-object segmentation


def iou(pred, gt) -> float:
    """Jaccard index of two binary masks (floats are thresholded at > 0.5).

    Both empty -> 1.0 (nothing to find, nothing found); one empty -> 0.0. TokenCut returns NaN and
    DSM 0 when both are empty; the saliency benchmarks never have an empty ground truth.
    """
    p, g = _mask(pred), _mask(gt)
    union = np.logical_or(p, g).sum()
    return 1.0 if union == 0 else float(np.logical_and(p, g).sum() / union)


def pixel_accuracy(pred, gt) -> float:
    """Fraction of pixels where the binarised prediction equals the ground truth."""
    return float(np.mean(_mask(pred) == _mask(gt)))


def f_beta_curves(score, gt, thresholds: int = 255) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall of ``score > t`` for TokenCut's ``t in np.arange(0, 1, 1/thresholds)``.

    With 255 bins these are t = k/255, k = 0..254 (t = 0 included; DSM drops it and keeps 254). The
    thresholds are built with ``np.arange`` exactly as TokenCut does, because 8-bit score maps take
    the values k/255 and ``k/255`` differs from ``k * (1/255)`` by an ulp for some k. A binary mask is
    a score map of 0/1, so every threshold gives the same mask.

    Empty prediction -> precision 1; empty ground truth -> recall 1 (TokenCut/DSM; the SOD toolboxes'
    ``+eps`` gives precision 0 instead, which changes the precision curve but never Fβ, since recall
    is then 0 and Fβ is 0 either way).
    """
    s = np.asarray(score, dtype=np.float64).ravel()
    g = _mask(gt).ravel()
    n_gt = g.sum()
    t = np.arange(0.0, 1.0, 1.0 / thresholds)
    # Pixels above each threshold, counted by binary search on the sorted scores instead of
    # building a (thresholds, pixels) boolean array.
    predicted = s.size - np.searchsorted(np.sort(s), t, side="right")
    true_pos = n_gt - np.searchsorted(np.sort(s[g]), t, side="right")
    precision = np.where(predicted == 0, 1.0, true_pos / np.maximum(predicted, 1))
    recall = np.where(n_gt == 0, 1.0, true_pos / max(n_gt, 1))
    return precision, recall


def f_beta(precision, recall, beta2: float = 0.3):
    """Fβ = (1 + β²) P R / (β² P + R), with 0/0 -> 0 as in TokenCut's ``F_score``."""
    p, r = np.asarray(precision, dtype=np.float64), np.asarray(recall, dtype=np.float64)
    den = beta2 * p + r
    return np.divide((1 + beta2) * p * r, den, out=np.zeros(np.broadcast(p, r).shape), where=den > 0)


def max_f_beta(precisions, recalls, beta2: float = 0.3) -> float:
    """maxFβ of a data set from per-image curves stacked as (n_images, n_thresholds).

    TokenCut's and DSM's ``F_max``: Fβ per image and threshold, then the mean over images per
    threshold, then the max over thresholds. (Some SOD toolboxes instead average P and R over images
    first, which gives a different number.) For binary predictions all thresholds give the same mask, so
    maxFβ is simply the mean over images of each image's Fβ.
    """
    return float(f_beta(precisions, recalls, beta2).mean(axis=0).max())


class SegmentationMeter:
    """Accumulates per-image curves, because maxFβ cannot be averaged from per-image values."""

    def __init__(self, thresholds: int = 255, beta2: float = 0.3):
        self.thresholds, self.beta2 = thresholds, beta2
        self.ious, self.accs, self.precisions, self.recalls = [], [], [], []

    def update(self, score_or_mask, gt) -> dict:
        """Adds one image; returns its iou, acc and Fβ of the mask ``score > 0.5``."""
        p, r = f_beta_curves(score_or_mask, gt, self.thresholds)
        self.precisions.append(p)
        self.recalls.append(r)
        self.ious.append(iou(score_or_mask, gt))
        self.accs.append(pixel_accuracy(score_or_mask, gt))
        # A mask's curve is flat, so its single threshold t = 0 reads the mask itself.
        p5, r5 = f_beta_curves(_mask(score_or_mask), gt, thresholds=1)
        f5 = float(f_beta(p5, r5, self.beta2)[0])
        return {"iou": self.ious[-1], "acc": self.accs[-1], "f_beta": f5}

    def compute(self) -> dict:
        return {
            "miou": float(np.mean(self.ious)),
            "acc": float(np.mean(self.accs)),
            "max_f_beta": max_f_beta(self.precisions, self.recalls, self.beta2),
            "n": len(self.ious),
        }


# ---------------------------------------------------------------- saliency metrics (pysodmetrics)
#
# MAE, S-measure (Fan et al. 2017) and E-measure (Fan et al. 2018) come from the community's
# library, pysodmetrics (`py_sod_metrics`), not from code of ours. Both maps are handed to it as
# 0/255 uint8 arrays made from the masks our other metrics use (ground truth > 127), because the
# library's own reading of a grey mask is > 128: on soft (matted) DUTS-TE edges a pixel of exactly
# 128 would otherwise count differently in different columns of one table.
#
# Our maxFβ against the library's (cross-checked on real ECSSD masks in tests/test_metrics.py):
# per threshold both take Fβ per image, then the mean over images, then the max over thresholds,
# with β² = 0.3, and agree to 1e-12 on every common threshold. The definitions differ in the
# threshold set: the library binarises `pred >= t` for t = 0..255 (t = 0: every pixel foreground),
# TokenCut/DSM and we `score > k/255` for k = 0..254, without the all-foreground threshold. So the
# library's maxF = max(ours, mean Fβ of predicting the whole image), and for binary masks, whose
# curve is flat, ours is the mean Fβ of the masks themselves. (Also: the library min-max normalises
# each prediction first, which changes nothing for 0/1 masks; with an empty ground truth its recall
# is 0 where ours is 1; the benchmarks have no empty ground truth.)


def saliency(pred, gt) -> dict:
    """One image's MAE, S-measure and E-measure of a binary mask, through pysodmetrics.

    "e_measure" is the E-measure of the mask (the library's curve at every threshold t >= 1, all
    equal for a 0/255 map); "mean_e_measure" the image's mean over the library's 256 thresholds,
    whose t = 0 end predicts every pixel foreground. The data set's mean and max E-measure follow
    from their means (`saliency_summary`), so summaries, resumes and merged shards are recomputed
    from per-image rows.
    """
    try:
        import py_sod_metrics as sod  # imported here: only runs with masks need it
    except ImportError as err:
        raise ImportError("the saliency metrics need pysodmetrics, installed apart because it caps numpy: "
                          "pip install -c constraints.txt --no-deps pysodmetrics==1.6.2") from err

    p = np.where(_mask(pred), 255, 0).astype(np.uint8)
    g = np.where(_mask(gt), 255, 0).astype(np.uint8)
    mae, sm, em = sod.MAE(), sod.Smeasure(), sod.Emeasure()
    for meter in (mae, sm, em):
        meter.step(p, g)
    curve = em.get_results()["em"]["curve"]  # index i: threshold 255 - i
    return {"mae": float(mae.get_results()["mae"]), "s_measure": float(sm.get_results()["sm"]),
            "e_measure": float(curve[0]), "mean_e_measure": float(np.mean(curve))}


def saliency_summary(means: dict) -> dict:
    """The data set's saliency figures from the means of the per-image `saliency` values: MAE and
    S-measure are means over images; mean and max E-measure are the mean and the max over the 256
    thresholds of the image-averaged curve, which for binary masks is `e_measure` at 255 thresholds
    and, at t = 0, 256 * mean_e_measure - 255 * e_measure (every pixel foreground: 0.25 n / (n - 1)
    for n pixels, whatever the prediction, unless the ground truth is empty or full). Equal to pysodmetrics' own accumulation (tested)."""
    out = {k: means[k] for k in ("mae", "s_measure") if k in means}
    if "e_measure" in means and "mean_e_measure" in means:
        em, mean = means["e_measure"], means["mean_e_measure"]
        out["mean_e_measure"] = mean
        out["max_e_measure"] = max(em, 256 * mean - 255 * em)
    return out


def mask_metrics(pred, gt) -> dict:
    """Every per-image metric of a binary predicted mask against a ground-truth mask: iou, acc,
    f_beta (the image's term of maxFβ: a mask's curve is flat) and the saliency metrics."""
    p, r = f_beta_curves(np.asarray(pred, dtype=np.float32), gt, thresholds=1)
    return {"iou": iou(pred, gt), "acc": pixel_accuracy(pred, gt), "f_beta": float(f_beta(p, r)[0]),
            **saliency(pred, gt)}


# ---------------------------------------------------------------- object localisation


def voc_box_to_edges(xmin, ymin, xmax, ymax) -> np.ndarray:
    """VOC XML boxes (1-based inclusive pixel indices) -> 0-based pixel edges.

    The pixel with 1-based index i spans [i - 1, i), so (1, 1, W, H) is the whole image
    [0, 0, W, H]. This is exactly LOST's/TokenCut's ``extract_gt_VOC``.
    """
    return np.array([xmin - 1, ymin - 1, xmax, ymax], dtype=np.float64)


def box_iou(boxes_a, boxes_b) -> np.ndarray:
    """Pairwise IoU (n, m) of boxes (x0, y0, x1, y1) given as pixel edges, x1 and y1 exclusive.

    A box's area is (x1 - x0)(y1 - y0) with no +1: the one-pixel box at (0, 0) is [0, 0, 1, 1].
    LOST/TokenCut use the same edges (their VOC loader subtracts 1 from xmin, ymin) but add 1e-7 to
    heights and unions, which turns an exact IoU of 0.5 into a miss; here IoU is exact. Pairs with
    zero union (two empty boxes) get 0.
    """
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4)[:, None]
    b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4)[None]
    wh = np.clip(np.minimum(a[..., 2:], b[..., 2:]) - np.maximum(a[..., :2], b[..., :2]), 0, None)
    inter = wh.prod(-1)

    def area(x):
        return np.clip(x[..., 2:] - x[..., :2], 0, None).prod(-1)

    union = area(a) + area(b) - inter
    return np.divide(inter, union, out=np.zeros(inter.shape), where=union > 0)


def corloc_hit(pred_box, gt_boxes) -> bool:
    """LOST's CorLoc test: IoU >= 0.5 with any ground-truth box.

    No prediction (None) and no ground-truth box are misses. LOST skips images without boxes (only
    possible with its ``--no_hard`` setting), so callers following it should drop them rather than
    count them.
    """
    if pred_box is None or len(gt_boxes) == 0:
        return False
    return bool((box_iou(pred_box, gt_boxes) >= 0.5).any())


# ---------------------------------------------------------------- part segmentation


def keypoint_labels(labels, parts) -> tuple[np.ndarray, np.ndarray]:
    """(ground-truth part ids, predicted readings) at one image's visible keypoints.

    ``labels``: int label map (H, W), 0 = background. ``parts``: (P, 3) rows of (x, y, part_id) of
    the VISIBLE keypoints in that map's pixels (deepcut.datasets.Sample.parts). The label is read at
    pixel (floor(y), floor(x)), clipped to the map: what Choudhury et al.'s notebook reads with
    ``grid_sample(mode='nearest', align_corners=False)`` except at exact integer ties.

    A reading carries both of the notebook's protocols (see `part_scores`): a keypoint on a part
    reads that part's label (> 0); a keypoint on background reads MINUS the label of the nearest
    part pixel (Euclidean), or 0 when the image has no part at all. The sign says "background"
    (the full-image protocol counts it as one more cluster); the magnitude is the part the
    foreground protocol gives it (there every visible keypoint is read as one of the K parts).
    """
    labels, parts = np.asarray(labels), np.asarray(parts, dtype=np.float64).reshape(-1, 3)
    h, w = labels.shape
    cols = np.clip(np.floor(parts[:, 0]).astype(int), 0, w - 1)
    rows = np.clip(np.floor(parts[:, 1]).astype(int), 0, h - 1)
    pred = labels[rows, cols].astype(int)
    on_background = pred == 0
    if on_background.any() and (labels > 0).any():
        pred[on_background] = -nearest_foreground(labels)[rows[on_background], cols[on_background]].astype(int)
    return parts[:, 2].astype(int), pred


def nmi_ari(gt, pred) -> tuple[float, float]:
    """NMI and ARI of two labellings (sklearn's defaults: arithmetic-mean NMI), as fractions; the
    papers report x100."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score  # ~1 s to import: parts only

    return float(normalized_mutual_info_score(gt, pred)), float(adjusted_rand_score(gt, pred))


def part_scores(gt, pred) -> dict:
    """Parts NMI/ARI of keypoint readings (`keypoint_labels`) pooled over the data set, in the two
    protocols of Choudhury et al. 2021's CUB notebook (``eval_all``), which the DeepCut paper's
    Table 3 copies its peers' numbers from. Pooling only makes sense when a label means the same
    part in every image.

    * ``nmi``, ``ari``: the full-image protocol (``is_full=True``: the whole photo, background one
      more cluster, so a keypoint on predicted background counts as a miss of every part). This
      is the protocol of Table 3: its row "Choudhury et al. 43.5 / 19.6" is that notebook's
      Full-NMI / Full-ARI.
    * ``nmi_fg``, ``ari_fg``: the foreground protocol (the notebook's default, photos cropped to
      the bird's box: ``dataset.crop=bbox``). Every visible keypoint is read as one of the K parts
      (their model scores parts everywhere, arg-max over the parts only); for a label map, a
      keypoint on background takes the nearest part. The notebook's later fix (ARI without the
      background as well as NMI) is followed.
    * ``kp_on_parts``: the fraction of visible keypoints that lie on a predicted part.
    """
    gt, pred = np.asarray(gt, dtype=int), np.asarray(pred, dtype=int)
    out = dict(zip(("nmi", "ari"), nmi_ari(gt, np.maximum(pred, 0))))
    out.update(zip(("nmi_fg", "ari_fg"), nmi_ari(gt, np.abs(pred))))
    out["kp_on_parts"] = float(np.mean(pred > 0)) if len(pred) else math.nan
    return out


# ---------------------------------------------------------------- aggregation


def summarize(rows: list[dict]) -> dict:
    """Means of every numeric metric over per-image rows, plus ``n_images`` and ``n_failed``.

    Missing keys, None and NaN are left out of that key's mean (a metric whose values are all NaN
    gives NaN); non-numeric values (names, errors) are ignored. A row is failed when its "error" is
    non-empty; its missing metrics are not counted, so failures show up in ``n_failed``, not in the
    means. The per-image "corloc" is a hit (bool) and is reported as a percentage.
    """
    values: dict[str, list[float]] = {}
    for row in rows:
        for key, v in row.items():
            if isinstance(v, (numbers.Real, np.bool_)):  # bools too: per-image hits
                values.setdefault(key, []).append(float(v))
    out = {}
    for key, vs in values.items():
        finite = [v for v in vs if not math.isnan(v)]
        out[key] = float(np.mean(finite)) if finite else math.nan
    if "corloc" in out:
        out["corloc"] *= 100
    out["n_images"] = len(rows)
    out["n_failed"] = sum(bool(row.get("error")) for row in rows)
    return out


# ---------------------------------------------------------------- instances (COCO AP / AR)

COCO_STATS = {"ap": 0, "ap50": 1, "ar1": 6, "ar10": 7, "ar100": 8}  # indices into COCOeval.stats


def coco_scores(records: list[dict]) -> dict:
    """Class-agnostic COCOeval (pycocotools) over images' proposals: ``ap_box``, ``ap50_box``,
    ``ar1_box``, ``ar10_box``, ``ar100_box`` and, when every ground-truth instance has a mask, the
    same with ``_mask``. A record: {"size": (H, W), "detections": COCO results without image_id
    (deepcut.instances.detections), "truth": its ground truth (deepcut.instances.truth)}; records
    without truth are left out. Crowd regions are COCO's: a detection on one is neither hit nor miss."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    records = [r for r in records if r.get("truth") is not None]
    if not records:
        return {}
    images, truth, found = [], [], []
    for n, r in enumerate(records, start=1):  # image ids of this evaluation only
        images.append({"id": n, "height": int(r["size"][0]), "width": int(r["size"][1])})
        truth += [{**t, "id": len(truth) + k, "image_id": n, "category_id": 1} for k, t in enumerate(r["truth"], 1)]
        found += [{**d, "image_id": n} for d in r["detections"]]
    types = ["bbox"] + (["segm"] if truth and all("segmentation" in t for t in truth) else [])
    out = {}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress and tables
        gt = COCO()
        gt.dataset = {"images": images, "annotations": truth, "categories": [{"id": 1, "name": "object"}]}
        gt.createIndex()
        for kind in types:
            suffix = "_box" if kind == "bbox" else "_mask"
            if not found:  # loadRes refuses an empty list: nothing found is AP = AR = 0
                out.update({k + suffix: 0.0 for k in COCO_STATS})
                continue
            ev = COCOeval(gt, gt.loadRes([dict(d) for d in found]), kind)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            # -1: no ground truth in that range (no non-crowd instance at all): not a score.
            out.update({k + suffix: (float(ev.stats[i]) if ev.stats[i] >= 0 else math.nan) for k, i in COCO_STATS.items()})
    return out
