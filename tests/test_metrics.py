"""Every metric against values worked out by hand on tiny arrays."""
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from deepcut.metrics import (
    SegmentationMeter,
    box_iou,
    corloc_hit,
    f_beta,
    f_beta_curves,
    iou,
    max_f_beta,
    keypoint_labels,
    part_scores,
    pixel_accuracy,
    summarize,
    voc_box_to_edges,
)

# --------------------------------------------------------------------- iou / accuracy


def test_iou_and_accuracy_of_a_float_prediction():
    pred = np.array([[0.2, 0.7], [0.9, 0.4]])  # > 0.5 -> [[0, 1], [1, 0]]
    gt = np.array([[0, 0], [1, 1]])
    # intersection {(1,0)} = 1, union {(0,1), (1,0), (1,1)} = 3
    assert iou(pred, gt) == pytest.approx(1 / 3)
    # agree at (0,0) and (1,0): 2 of 4
    assert pixel_accuracy(pred, gt) == pytest.approx(0.5)


def test_threshold_is_strict_and_tensors_are_accepted():
    # 0.5 is background (TokenCut's `> 0.5`), so the prediction is empty.
    assert iou(torch.tensor([0.5, 0.5]), torch.tensor([1, 0])) == 0.0


@pytest.mark.parametrize(
    "pred, gt, expected_iou, expected_acc",
    [
        ([0, 0, 0, 0], [1, 1, 0, 0], 0.0, 0.5),  # empty prediction: 0 / 2; agree on 2 of 4
        ([1, 0, 0, 0], [0, 0, 0, 0], 0.0, 0.75),  # empty gt: 0 / 1; agree on 3 of 4
        ([0, 0, 0, 0], [0, 0, 0, 0], 1.0, 1.0),  # both empty: defined as 1
        ([1, 1, 1, 1], [1, 1, 0, 0], 0.5, 0.5),  # full image: 2 / 4
        ([1, 1, 0, 0], [1, 1, 0, 0], 1.0, 1.0),
    ],
)
def test_iou_and_accuracy_edge_cases(pred, gt, expected_iou, expected_acc):
    assert iou(np.array(pred), np.array(gt)) == expected_iou
    assert pixel_accuracy(np.array(pred), np.array(gt)) == expected_acc


# --------------------------------------------------------------------- precision / recall curves


def test_curves_of_a_soft_score():
    score = np.array([0.0, 0.3, 0.7, 1.0])
    gt = np.array([0, 0, 1, 1])
    p, r = f_beta_curves(score, gt)
    assert p.shape == r.shape == (255,)
    # t = k/255. k = 0..76 (t < 0.3 = 76.5/255): pred {0.3, 0.7, 1.0} -> P = 2/3, R = 1
    # k = 77..178 (t < 0.7 = 178.5/255):  pred {0.7, 1.0} -> P = 1, R = 1
    # k = 179..254 (t < 1):               pred {1.0}      -> P = 1, R = 1/2
    np.testing.assert_allclose(p, [2 / 3] * 77 + [1] * 102 + [1] * 76)
    np.testing.assert_allclose(r, [1] * 77 + [1] * 102 + [0.5] * 76)


def test_a_score_equal_to_the_threshold_is_background():
    # Score exactly 51/255 (an 8-bit map) is foreground for k < 51 and background from t = 51/255 on.
    score = np.array([51 / 255, 0.0])
    _, r = f_beta_curves(score, np.array([1, 0]))
    assert r[:51].all() and not r[51:].any()


def test_curves_edge_cases():
    # Empty prediction, non-empty gt: P = 1 (TokenCut), R = 0 -> F = 0 at every threshold.
    p, r = f_beta_curves(np.zeros(4), np.array([1, 0, 0, 0]))
    assert (p == 1).all() and (r == 0).all() and (f_beta(p, r) == 0).all()
    # Empty gt, prediction {1.0}: TP = 0 -> P = 0 / 1 = 0, R = 1 (TokenCut) -> F = 0.
    p, r = f_beta_curves(np.array([0.0, 1.0]), np.zeros(2))
    assert (p == 0).all() and (r == 1).all() and (f_beta(p, r) == 0).all()
    # Both empty: P = R = 1 -> F = 1.
    p, r = f_beta_curves(np.zeros(3), np.zeros(3))
    assert (f_beta(p, r) == 1).all()
    # Full image, gt 1 of 4: P = 1/4, R = 1.
    p, r = f_beta_curves(np.ones(4), np.array([1, 0, 0, 0]))
    assert (p == 0.25).all() and (r == 1).all()


def test_f_beta_by_hand():
    # P = 1, R = 1/2: 1.3 * 0.5 / (0.3 + 0.5) = 0.65 / 0.8 = 13/16; 0/0 -> 0.
    np.testing.assert_allclose(f_beta([1.0, 0.0], [0.5, 0.0]), [13 / 16, 0.0])


# --------------------------------------------------------------------- maxFβ


def test_max_f_beta_averages_f_over_images_not_p_and_r():
    # Image A: P = 1, R = 1/2 -> F = 0.65 / 0.80 = 13/16.
    # Image B: P = 1/2, R = 1 -> F = 0.65 / 1.15 = 13/23.
    # TokenCut/DSM: mean F = (13/16 + 13/23) / 2 = 13 * 39 / 736 = 507/736 ~= 0.6889.
    # Averaging P and R first would give P = R = 3/4 -> F = 3/4 instead.
    a_score, a_gt = np.array([1, 0, 0, 0]), np.array([1, 1, 0, 0])
    b_score, b_gt = np.array([1, 1, 0, 0]), np.array([1, 0, 0, 0])
    curves = [f_beta_curves(a_score, a_gt), f_beta_curves(b_score, b_gt)]
    precisions, recalls = np.stack([c[0] for c in curves]), np.stack([c[1] for c in curves])
    assert max_f_beta(precisions, recalls) == pytest.approx(507 / 736)
    assert max_f_beta(precisions, recalls) != pytest.approx(0.75)


def test_max_f_beta_takes_the_best_threshold_of_the_mean():
    # Two images, two thresholds. F per image: threshold 0 -> [1, 0], threshold 1 -> [13/16, 13/16].
    # Means: 1/2 and 13/16; the max is 13/16 (the per-image maxima would average to 29/32).
    precisions = np.array([[1.0, 1.0], [0.0, 1.0]])
    recalls = np.array([[1.0, 0.5], [0.0, 0.5]])
    assert max_f_beta(precisions, recalls) == pytest.approx(13 / 16)


def test_segmentation_meter():
    meter = SegmentationMeter()
    # Image A above: pred [1,0,0,0], gt [1,1,0,0]: IoU 1/2, acc 3/4, F 13/16.
    row = meter.update(np.array([1.0, 0, 0, 0]), np.array([1, 1, 0, 0]))
    assert row == pytest.approx({"iou": 0.5, "acc": 0.75, "f_beta": 13 / 16})
    # Image B as a soft map: > 0.5 gives [1,1,0,0] vs gt [1,0,0,0]: IoU 1/2, acc 3/4, F 13/23.
    # Its curve: t < 0.3 -> pred [1,1,1,0] (P 1/3, R 1); t < 0.6 -> [1,1,0,0]; t < 0.9 -> [1,0,0,0].
    row = meter.update(np.array([0.9, 0.6, 0.3, 0.0]), np.array([1, 0, 0, 0]))
    assert row == pytest.approx({"iou": 0.5, "acc": 0.75, "f_beta": 13 / 23})
    out = meter.compute()
    # At t in [0.6, 0.9) image B is perfect (F = 1): max mean F = (13/16 + 1) / 2 = 29/32.
    assert out == pytest.approx({"miou": 0.5, "acc": 0.75, "max_f_beta": 29 / 32, "n": 2})


# --------------------------------------------------------------------- boxes


def test_voc_conversion():
    # The single top-left pixel (1-based inclusive 1..1) is the edge box [0, 0, 1, 1] of area 1.
    np.testing.assert_array_equal(voc_box_to_edges(1, 1, 1, 1), [0, 0, 1, 1])
    # A whole 500x375 image, (1, 1, 500, 375), is [0, 0, 500, 375].
    np.testing.assert_array_equal(voc_box_to_edges(1, 1, 500, 375), [0, 0, 500, 375])
    assert box_iou(voc_box_to_edges(1, 1, 1, 1), [[0, 0, 1, 1]])[0, 0] == 1.0


def test_box_iou_by_hand():
    a = [[0, 0, 2, 2], [0, 0, 4, 4]]
    b = [[1, 1, 3, 3], [2, 0, 4, 2], [1, 1, 3, 3], [5, 5, 6, 6]]
    # [0,0,2,2] vs [1,1,3,3]: inter 1, union 4 + 4 - 1 = 7
    # [0,0,2,2] vs [2,0,4,2]: touching edges, inter 0
    # [0,0,4,4] vs [1,1,3,3]: nested, inter 4, union 16
    # [0,0,4,4] vs [2,0,4,2]: inter 4, union 16
    # [5,5,6,6] is disjoint from both
    expected = [[1 / 7, 0, 1 / 7, 0], [1 / 4, 1 / 4, 1 / 4, 0]]
    np.testing.assert_allclose(box_iou(a, b), expected)
    assert box_iou(np.zeros((0, 4)), b).shape == (0, 4)


def test_corloc_hit():
    pred = np.array([0, 0, 10, 10])
    # First gt box disjoint; second: inter 100, union 100 + 200 - 100 = 200 -> exactly 0.5, a hit.
    assert corloc_hit(pred, np.array([[20, 20, 30, 30], [0, 0, 10, 20]]))
    # 100 / 210 < 0.5: a miss.
    assert not corloc_hit(pred, np.array([[20, 20, 30, 30], [0, 0, 10, 21]]))
    assert not corloc_hit(None, np.array([[0, 0, 10, 10]]))
    assert not corloc_hit(pred, np.zeros((0, 4)))


# --------------------------------------------------------------------- parts


def parts_nmi_ari(label_maps, parts_list):
    """Readings at every image's keypoints, pooled over the data set, as run.py and evaluate.py do
    (the full-image protocol: background one more cluster)."""
    readings = [keypoint_labels(labels, parts) for labels, parts in zip(label_maps, parts_list)]
    scores = part_scores(np.concatenate([g for g, _ in readings]), np.concatenate([p for _, p in readings]))
    return scores["nmi"], scores["ari"]


LABELS = np.array([[0, 1, 1], [0, 1, 2]])


def test_parts_perfect_relabelled_partition():
    # Keypoint k always lands on part 3 - k: a relabelling, so NMI = ARI = 1.
    labels = np.array([[3, 2, 1]])
    kps = np.array([[0.5, 0.5, 0], [1.5, 0.5, 1], [2.5, 0.5, 2]])  # (x, y, part_id)
    nmi, ari = parts_nmi_ari([labels, labels], [kps, kps])
    assert nmi == pytest.approx(1.0) and ari == pytest.approx(1.0)


def test_parts_by_hand():
    # Rows are visible keypoints (x, y, part_id); invisible ones never reach the metric.
    img1 = np.array([[1.7, 0.2, 0],  # floor -> row 0, col 1 -> part 1
                     [3.0, 0.0, 1]])  # x = W is the right edge: clipped to col 2 -> part 1
    img2 = np.array([[1.5, 1.5, 0],  # row 1, col 1 -> part 1
                     [0.9, 1.2, 1]])  # row 1, col 0 -> background 0, its own cluster
    nmi, ari = parts_nmi_ari([LABELS, LABELS], [img1, img2])
    gt, pred = [0, 1, 0, 1], [1, 1, 1, 0]
    # Contingency: kp0 -> {1: 2}; kp1 -> {1: 1, 0: 1}. n = 4.
    # ARI: sum C(n_ij, 2) = 1; rows C(2,2) + C(2,2) = 2; cols C(3,2) + C(1,2) = 3;
    #      expected 2 * 3 / C(4,2) = 1; max (2 + 3) / 2 = 2.5 -> (1 - 1) / (2.5 - 1) = 0.
    assert ari == pytest.approx(0.0, abs=1e-12)
    # NMI: H(gt) = ln 2; H(pred) = -(3/4 ln 3/4 + 1/4 ln 1/4);
    #      MI = 1/2 ln((1/2) / (1/2 * 3/4)) + 1/4 ln((1/4) / (1/2 * 3/4)) + 1/4 ln((1/4) / (1/2 * 1/4));
    #      NMI = MI / ((H(gt) + H(pred)) / 2).
    h_gt = math.log(2)
    h_pred = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    mi = 0.5 * math.log(4 / 3) + 0.25 * math.log(2 / 3) + 0.25 * math.log(2)
    assert nmi == pytest.approx(mi / ((h_gt + h_pred) / 2))
    assert (nmi, ari) == pytest.approx(
        (normalized_mutual_info_score(gt, pred), adjusted_rand_score(gt, pred)), abs=1e-12)


def test_parts_background_keypoints_read_minus_the_nearest_part():
    # Row [1, 0, 0, 2]: the keypoint in column 1 is nearest to part 1, the one in column 2 to part 2.
    kps = np.array([[0.5, 0.5, 0], [1.5, 0.5, 0], [2.5, 0.5, 1], [3.5, 0.5, 1]])
    gt, pred = keypoint_labels(np.array([[1, 0, 0, 2]]), kps)
    assert gt.tolist() == [0, 0, 1, 1] and pred.tolist() == [1, -1, -2, 2]
    # An image without any part: background keypoints read 0.
    assert keypoint_labels(np.zeros((2, 2), int), kps[:1])[1].tolist() == [0]


def test_part_scores_full_and_foreground_protocols_by_hand():
    s = part_scores([0, 0, 1, 1], [1, -1, -2, 2])
    # Foreground protocol: [1, 1, 2, 2] is a relabelling of the ground truth.
    assert s["nmi_fg"] == pytest.approx(1.0) and s["ari_fg"] == pytest.approx(1.0)
    # Full protocol, [1, 0, 0, 2]: sum C(n_ij, 2) = 0; rows 1 + 1 = 2; columns C(2, 2) = 1;
    # expected 2 * 1 / C(4, 2) = 1/3; max (2 + 1) / 2 = 3/2 -> (0 - 1/3) / (3/2 - 1/3) = -2/7.
    assert s["ari"] == pytest.approx(-2 / 7)
    assert s["nmi"] == pytest.approx(normalized_mutual_info_score([0, 0, 1, 1], [1, 0, 0, 2]))
    assert s["kp_on_parts"] == 0.5


# --------------------------------------------------------------------- summary


def test_summarize_with_failed_rows():
    rows = [
        {"name": "a", "iou": 0.5, "corloc": True},
        {"name": "b", "iou": 1.0, "corloc": False},
        {"name": "c", "iou": None, "error": "CUDA out of memory"},  # failed
        {"name": "d", "iou": float("nan"), "corloc": np.bool_(True), "error": ""},  # not failed
    ]
    out = summarize(rows)
    # iou: (0.5 + 1.0) / 2 (None and NaN left out); corloc: 2 hits of 3 -> 66.67 %.
    assert out == pytest.approx({"iou": 0.75, "corloc": 200 / 3, "n_images": 4, "n_failed": 1})


def test_summarize_all_nan_metric_is_nan():
    out = summarize([{"iou": float("nan")}])
    assert math.isnan(out["iou"]) and out["n_images"] == 1 and out["n_failed"] == 0


# --------------------------------------------------------------------- saliency metrics (pysodmetrics)

from pathlib import Path  # noqa: E402

import py_sod_metrics as sod  # noqa: E402
from PIL import Image  # noqa: E402

from deepcut import metrics  # noqa: E402
from deepcut.results import summarize_run  # noqa: E402

ECSSD = Path(__file__).resolve().parents[2] / "shared" / "data" / "ECSSD" / "ground_truth_mask"


def test_saliency_by_hand_on_a_tiny_mask():
    gt = np.zeros((4, 5), bool)
    gt[1:3, 1:4] = True                      # 6 of 20 pixels
    pred = np.zeros_like(gt)
    pred[1:3, 2:4] = True                    # 4 pixels, all inside
    m = metrics.saliency(pred, gt)
    assert m["mae"] == pytest.approx(2 / 20)  # two pixels differ
    assert metrics.saliency(gt, gt)["s_measure"] == pytest.approx(1.0)
    assert metrics.saliency(gt, gt)["e_measure"] == pytest.approx(20 / 19)  # the library's (sum / (n - 1 + eps))
    # Issue 27, item 16: the row held e_measure_full, 0.25 on every image (the t = 0 end, where
    # every pixel is predicted foreground: 0.25 n / (n - 1)); it holds the image's mean E-measure over 256 thresholds.
    assert "e_measure_full" not in m
    full = metrics.saliency(np.ones_like(gt), gt)["e_measure"]
    assert full == pytest.approx(0.25 * 20 / 19)
    assert m["mean_e_measure"] == pytest.approx((255 * m["e_measure"] + full) / 256)


def test_rows_of_older_runs_with_e_measure_full_summarise_alike():
    from deepcut.results import summarize_run
    new = {"id": "a", "e_measure": 0.8, "mean_e_measure": (255 * 0.8 + 0.25) / 256}
    old = {"id": "b", "e_measure": 0.6, "e_measure_full": 0.25}
    s = summarize_run([new, old])
    assert s["mean_e_measure"] == pytest.approx((255 * 0.7 + 0.25) / 256) and s["max_e_measure"] == pytest.approx(0.7)
    assert "e_measure_full" not in s and "e_measure" not in s


def _real_pairs(n=12):
    """Real ECSSD masks as ground truth; as predictions, each one shifted, another image's mask at
    this size, an empty and a full mask: a spread of good, poor and degenerate predictions."""
    files = sorted(ECSSD.glob("*.png"))[:n]
    gts = [np.asarray(Image.open(f).convert("L")) > 127 for f in files]
    preds = []
    for i, g in enumerate(gts):
        other = np.asarray(Image.open(files[(i + 1) % n]).convert("L").resize(g.shape[::-1], Image.NEAREST)) > 127
        preds.append([np.roll(g, 7 * (i + 1), axis=1), other, np.zeros_like(g), np.ones_like(g)][i % 4])
    return preds, gts


needs_ecssd = pytest.mark.skipif(not ECSSD.is_dir(), reason="../shared/data/ECSSD is absent")


@needs_ecssd
def test_saliency_summary_from_rows_equals_pysodmetrics_accumulation_on_real_masks():
    """Per-image rows (what results.csv holds) give the library's own data-set figures: a summary
    recomputed from rows (resume, merged shards) is the library's number."""
    preds, gts = _real_pairs()
    mae, sm, em = sod.MAE(), sod.Smeasure(), sod.Emeasure()
    rows = []
    for i, (p, g) in enumerate(zip(preds, gts)):
        for meter in (mae, sm, em):
            meter.step(np.where(p, 255, 0).astype(np.uint8), np.where(g, 255, 0).astype(np.uint8))
        rows.append({"id": f"{i:03d}", **metrics.mask_metrics(p, g)})
    s = summarize_run(rows)
    curve = em.get_results()["em"]["curve"]
    assert s["mae"] == pytest.approx(mae.get_results()["mae"], abs=1e-12)
    assert s["s_measure"] == pytest.approx(sm.get_results()["sm"], abs=1e-12)
    assert s["mean_e_measure"] == pytest.approx(curve.mean(), abs=1e-12)
    assert s["max_e_measure"] == pytest.approx(curve.max(), abs=1e-12)
    assert 0.2 < s["s_measure"] < 0.9 and "e_measure" not in s and "e_measure_full" not in s and 0 < s["mean_e_measure"] < 1


@needs_ecssd
def test_our_max_f_beta_against_pysodmetrics_on_real_masks():
    """Soft score maps (blurred real masks, values 0..255): per threshold, Fβ per image agrees with
    the library's to 1e-12; the library also has the threshold t = 0 (every pixel foreground), so
    its maxF = max(ours, mean Fβ of the full mask). The definition difference the docstring states.
    Also TokenCut's thresholds `np.arange(0, 1, 1/255)` fall an ulp below k/255 for some k, where
    score k/255 then counts as foreground: there ours is the library's curve at `>= k`."""
    from scipy.ndimage import uniform_filter

    _, gts = _real_pairs()
    lib = sod.Fmeasure() if hasattr(sod, "Fmeasure") else None
    ours_p, ours_r, full = [], [], []
    for i, g in enumerate(gts):
        score = uniform_filter(np.roll(g, 5 * i, axis=0).astype(np.float64), size=15)
        score8 = np.round(score * 255).astype(np.uint8)
        score8[0, 0], score8[-1, -1] = 0, 255  # the library min-max normalises: keep the range 0..255
        lib.step(score8, np.where(g, 255, 0).astype(np.uint8))
        p, r = metrics.f_beta_curves(score8 / 255.0, g)
        ours_p.append(p)
        ours_r.append(r)
        pf, rf = metrics.f_beta_curves(np.ones(g.shape), g, thresholds=1)
        full.append(metrics.f_beta(pf, rf)[0])
    theirs = lib.get_results()["fm"]["curve"]  # index i: pred >= 255 - i
    ours_curve = metrics.f_beta(np.array(ours_p), np.array(ours_r)).mean(axis=0)  # k: score > k/255
    k = np.arange(255)
    below = np.arange(0.0, 1.0, 1 / 255) < k / 255  # the ulp cases: score k/255 > threshold k
    at_least = theirs[::-1]                          # index v: the library's pred >= v
    np.testing.assert_allclose(ours_curve, np.where(below, at_least[k], at_least[k + 1]), atol=1e-12)
    assert 0 < below.sum() < 40
    assert theirs[255] == pytest.approx(np.mean(full), abs=1e-12)
    ours = metrics.max_f_beta(ours_p, ours_r)
    assert theirs.max() == pytest.approx(max(ours, np.mean(full)), abs=1e-12)
