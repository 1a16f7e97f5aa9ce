"""DeepCut on features with known answers: well-separated groups must be cut exactly along them."""
import math

import numpy as np
import pytest
import torch

from deepcut.masks import labels_within, mask_to_box, relabel_background_first, upsample_labels
from deepcut.gnn import GNNBatch
from deepcut.fit import GNN, Graph, Optimisation, build_graph, fit
from deepcut.losses import LOSSES
from deepcut.methods.deepcut import DeepCut, in_label_order
from deepcut.seeds import derive_seed
from deepcut.postprocess import Postprocess
from deepcut.errors import ConfigError


def train(features, seeds, *, loss="ncut", graph=Graph(), **kwargs):
    """build_graph then fit: B images' features -> Fit."""
    return fit(*build_graph(features, graph, loss), seeds, loss=loss, **kwargs)


def grouped_features(labels: torch.Tensor, centres: torch.Tensor, noise: float = 0.05, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return centres[labels.flatten()] + noise * torch.randn(labels.numel(), centres.shape[1], generator=g)


def blob_grid(h=10, w=12):
    labels = torch.zeros(h, w, dtype=torch.long)
    labels[2:6, 3:7] = 1
    return labels


def test_ncut_cuts_two_groups_exactly():
    truth = blob_grid()
    f = grouped_features(truth, torch.eye(16)[:2] * 3)
    for seed in range(3):
        assert torch.equal(DeepCut(loss="ncut", k=2)(f, truth.shape, seed=seed), truth)


def test_ncut_three_groups_with_k3():
    truth = blob_grid()
    truth[7:9, 6:11] = 2
    f = grouped_features(truth, torch.eye(16)[:3] * 3)
    # One GNN finds it from about 2 of 3 initialisations (K = 3 has local minima): the restart of
    # lowest loss among 8 does, for every seed.
    for seed in range(3):
        out = DeepCut(loss="ncut", k=3, optimisation=Optimisation(steps=100, lr=1e-2, restarts=8))(f, truth.shape, seed=seed)
        # Same partition as the truth (background is 0 in both; the two objects may swap ids).
        assert torch.equal(out == 0, truth == 0)
        assert len({(int(a), int(b)) for a, b in zip(out.flatten(), truth.flatten())}) == 3


def test_cc_finds_three_clusters_with_kmax_10():
    # Three equal stripes with centres 120 degrees apart: CC (alpha = 3) must separate all three.
    truth = torch.zeros(12, 12, dtype=torch.long)
    truth[:, 4:8], truth[:, 8:] = 1, 2
    angles = torch.tensor([0.0, 2 * math.pi / 3, 4 * math.pi / 3])
    centres = torch.zeros(3, 16)
    centres[:, 0], centres[:, 1] = 3 * angles.cos(), 3 * angles.sin()
    f = grouped_features(truth, centres)
    for seed in range(3):
        out = DeepCut(loss="cc", k=10, optimisation=Optimisation(steps=100, lr=1e-2))(f, truth.shape, seed=seed)
        assert out.unique().tolist() == [0, 1, 2]
        for stripe in (out[:, :4], out[:, 4:8], out[:, 8:]):
            assert stripe.unique().numel() == 1


@pytest.mark.parametrize("k", [2, 3, 5, 8])
@pytest.mark.parametrize("grid", [(6, 9), (9, 6)])
def test_any_k_and_non_square_grid_give_contiguous_labels(k, grid):
    f = torch.randn(grid[0] * grid[1], 8, generator=torch.Generator().manual_seed(k))
    for loss in ("ncut", "cc"):
        out = DeepCut(loss=loss, k=k)(f, grid, seed=1)
        assert out.shape == grid and out.dtype == torch.long
        values = out.unique().tolist()
        assert values == list(range(len(values))) and len(values) <= k


def test_seed_is_per_image_and_batch_independent():
    f = torch.randn(4, 30, 8, generator=torch.Generator().manual_seed(0))
    method = DeepCut(graph=Graph(), optimisation=Optimisation(steps=20, lr=1e-2, restarts=2))
    seeds = [derive_seed(0, f"img{i}") for i in range(4)]
    batched = method.batch(f, (5, 6), seeds)
    for i in range(4):
        assert torch.equal(method(f[i], (5, 6), seed=seeds[i]), batched[i])
    reordered = method.batch(f.flip(0), (5, 6), seeds[::-1])
    assert all(torch.equal(a, b) for a, b in zip(batched, reordered[::-1]))
    assert derive_seed(0, "a") != derive_seed(1, "a") and derive_seed(0, "a") == derive_seed(0, "a")


@pytest.mark.parametrize("restarts", [1, 2])  # one GNN per image: one batched matmul; several: per image
def test_batched_training_equals_one_image_at_a_time(restarts):
    """The raw soft assignments agree, not only the labels (dropout and init are per image)."""
    f = torch.randn(3, 40, 8, generator=torch.Generator().manual_seed(2))
    opt = Optimisation(steps=15, lr=1e-2, restarts=restarts)
    batched = train(f, [1, 2, 3], opt=opt)
    for i, seed in enumerate([1, 2, 3]):
        alone = train(f[i:i + 1], [seed], opt=opt)
        assert torch.equal(alone.soft[0], batched.soft[i]) and torch.equal(alone.losses[0], batched.losses[i])


def test_restarts_keep_the_lowest_loss():
    f = torch.randn(50, 8, generator=torch.Generator().manual_seed(3))
    g, opt = Graph(), Optimisation(steps=30, lr=1e-2, restarts=6)
    result = train(f[None], [7], graph=g, opt=opt)
    ids, losses = result.ids, result.losses
    assert ids.shape == (1, 6, 50) and losses.shape == (1, 6) and result.soft.shape == (1, 6, 50, 2)
    assert losses[0].unique().numel() > 1  # the restarts really differ
    # Restart 0 is the single-start run: restart r's random numbers do not depend on the count
    # (equal up to rounding: the first layer's matmul has R times the rows).
    single = train(f[None], [7], graph=g, opt=Optimisation(steps=30, lr=1e-2))
    assert torch.allclose(single.soft[0, 0], result.soft[0, 0], atol=1e-5)
    assert torch.equal(single.ids[0, 0], result.ids[0, 0])
    best = relabel_background_first(ids[0, losses[0].argmin()].view(5, 10))
    assert torch.equal(DeepCut(graph=g, optimisation=opt)(f, (5, 10), seed=7), best)


def test_vote_is_the_foreground_majority_of_the_restarts():
    f = torch.randn(60, 8, generator=torch.Generator().manual_seed(4))
    opt = Optimisation(restarts=5, combine="vote")
    ids = train(f[None], [3], graph=Graph(), opt=opt).ids
    fg = torch.stack([relabel_background_first(i.view(6, 10)) > 0 for i in ids[0]]).sum(0)
    out = DeepCut(graph=Graph(), optimisation=opt)(f, (6, 10), seed=3)
    assert torch.equal(out, (fg >= 3).long())


def test_soft_assignment_of_the_best_restart_in_label_order():
    truth = blob_grid()
    f = grouped_features(truth, torch.eye(16)[:2] * 3)
    opt = Optimisation(restarts=3, combine="best")
    (labels, soft), = DeepCut(optimisation=opt).batch(f[None], truth.shape, [5], soft=True)
    assert torch.equal(labels, truth) and soft.shape == (2, *truth.shape)
    result = train(f[None], [5], opt=opt)
    s = result.soft[0, result.losses[0].argmin()].T.reshape(2, *truth.shape)  # (K, h, w) by cluster id
    background = int(s[:, 0, 0].argmax())  # the cluster at the corner is the background (label 0)
    assert torch.equal(soft, s[[background, 1 - background]])
    assert torch.equal(soft.argmax(0), labels)
    assert torch.allclose(soft.sum(0), torch.ones(truth.shape))


def test_soft_assignment_sums_the_clusters_that_share_a_label():
    # Ids 0 and 2 are both background (label 0), id 1 is label 1, id 3 never occurs.
    probs = torch.tensor([[0.1, 0.2, 0.3], [0.6, 0.5, 0.1], [0.2, 0.2, 0.5], [0.1, 0.1, 0.1]])
    ids, labels = torch.tensor([1, 1, 2]), torch.tensor([1, 1, 0])
    with_shared = in_label_order(probs, torch.tensor([1, 0, 2]), torch.tensor([1, 0, 0]))
    assert torch.allclose(with_shared, torch.stack([probs[0] + probs[2], probs[1], probs[3]]))
    assert torch.equal(in_label_order(probs, ids, labels), torch.stack([probs[2], probs[1], probs[0], probs[3]]))


def test_soft_assignment_of_the_vote_is_the_mean_foreground_probability():
    f = torch.randn(60, 8, generator=torch.Generator().manual_seed(4))
    opt = Optimisation(restarts=5, combine="vote")
    result = train(f[None], [3], graph=Graph(), opt=opt)
    foreground = torch.zeros(60)
    for s, ids in zip(result.soft[0], result.ids[0]):  # each restart: 1 - P(its border cluster)
        background = ids[relabel_background_first(ids.view(6, 10)).flatten() == 0][0]
        foreground += (1 - s[:, background]) / 5
    (labels, soft), = DeepCut(graph=Graph(), optimisation=opt).batch(f[None], (6, 10), [3], soft=True)
    assert torch.allclose(soft[1].flatten(), foreground) and torch.allclose(soft[0], 1 - soft[1])
    assert torch.equal(labels, DeepCut(graph=Graph(), optimisation=opt)(f, (6, 10), seed=3))


def test_soft_assignment_of_parts_is_the_second_stage():
    truth = blob_grid(12, 12)
    truth[2:6, 3:7], truth[6:10, 3:7] = 1, 2
    centres = torch.eye(16)[:3] * 3
    centres[2] = centres[1] * 0.3 + torch.eye(16)[2] * 2
    f = grouped_features(truth, centres)
    method = DeepCut(k=2, mode="parts", optimisation=Optimisation(steps=100, lr=1e-2))
    (labels, soft), = method.batch(f[None], truth.shape, [0], soft=True)
    assert torch.equal(labels, method(f, truth.shape, seed=0)) and soft.shape == (3, 12, 12)
    background = labels == 0
    assert (soft[0][background] == 1).all() and (soft[1:, background] == 0).all()
    # Foreground: the second stage's S on the foreground's own sub-graph, in label order.
    inside = (~background).flatten().nonzero().squeeze(1)
    stage2 = train(f[inside][None], [derive_seed(0, "fg")], opt=method.optimisation)
    s = stage2.soft[0, 0]  # (n_fg, 2)
    first = int(labels.flatten()[inside][0]) - 1  # the cluster that holds label 1
    first = first if int(s[0].argmax()) == 0 else 1 - first
    assert torch.equal(soft[0].flatten()[inside], torch.zeros(len(inside)))
    assert torch.allclose(soft[1:].flatten(1)[:, inside], s.T[[first, 1 - first]]) or \
        torch.allclose(soft[1:].flatten(1)[:, inside], s.T[[1 - first, first]])
    assert torch.equal(soft.argmax(0), labels)


def test_stopping_rule_stops_early_with_a_converged_answer():
    truth = blob_grid()
    f = grouped_features(truth, torch.eye(16)[:2] * 3)
    opt = Optimisation(steps=5000, lr=1e-2, tol=1e-4, patience=5)
    assert torch.equal(DeepCut(optimisation=opt)(f, truth.shape, seed=0), truth)
    assert train(f[None], [0], opt=opt).steps.item() < 5000


def test_stopping_rule_counts_the_first_step_as_an_improvement():
    """patience=1 must not stop a GNN whose loss keeps improving (it did: inf - tol * inf is NaN,
    so the first step never counted as an improvement and every GNN stopped after one step)."""
    truth = blob_grid()
    f = grouped_features(truth, torch.eye(16)[:2] * 3)[None]
    quiet = GNN(dropout=0.0)  # deterministic training loss: at lr 1e-3 it decreases at every step
    plain = train(f, [0], gnn=quiet, opt=Optimisation(steps=20, lr=1e-3, restarts=2))
    patient = train(f, [0], gnn=quiet, opt=Optimisation(steps=20, lr=1e-3, restarts=2, tol=0.0, patience=1))
    assert patient.steps.tolist() == [[20, 20]]
    assert torch.equal(patient.soft, plain.soft) and torch.equal(patient.losses, plain.losses)
    # A loss that never improves (lr 0): improved at step 1, then stale for `patience` steps.
    frozen = train(f, [0], gnn=quiet, opt=Optimisation(steps=20, lr=0.0, tol=1e-9, patience=3))
    assert frozen.steps.tolist() == [[4]]


def test_stopped_gnns_keep_their_parameters_while_the_batch_trains_on():
    """A GNN that stopped gives the same answer as one trained for just that many steps."""
    truth = blob_grid()
    f = grouped_features(truth, torch.eye(16)[:2] * 3)[None]
    opt = Optimisation(steps=300, lr=1e-2, restarts=4, tol=1e-3, patience=3)
    batch = train(f, [2], opt=opt)
    assert batch.steps.unique().numel() > 1  # they stopped at different steps
    for r, steps in enumerate(batch.steps[0].tolist()):
        alone = train(f, [2], opt=Optimisation(steps=steps, lr=1e-2, restarts=4))  # no stopping rule
        assert torch.equal(alone.soft[0, r], batch.soft[0, r])


def test_objectives_table_and_unknown_loss():
    assert set(LOSSES) == {"ncut", "cc"}
    with pytest.raises(ValueError, match="loss.name='bogus'"):
        DeepCut(loss="bogus")


def test_dropout_masks_are_per_image_restart_and_step():
    model = GNNBatch([11, 12], restarts=3, in_dim=4, k=2, mlp_hidden=8, dropout=0.25)
    masks = [model._masks((8, 5000)).view(2, 3, 8, 5000) for _ in range(2)]
    model.step += 1
    later = model._masks((8, 5000)).view(2, 3, 8, 5000)
    for m in masks[0].flatten(0, 1):
        assert torch.equal(m.unique(), torch.tensor([0.0, 4 / 3])) and abs((m == 0).float().mean() - 0.25) < 0.01
    assert torch.equal(masks[0], masks[1])  # a step's masks are a function of (seed, step)
    assert not torch.equal(masks[0], later) and not torch.equal(masks[0][0], masks[0][1])
    assert not torch.equal(masks[0][0, 0], masks[0][0, 1])
    fewer = GNNBatch([12], restarts=2, in_dim=4, k=2, mlp_hidden=8, dropout=0.25)._masks((8, 5000)).view(2, 8, 5000)
    assert torch.equal(fewer, masks[0][1, :2])  # restart r's mask does not depend on the count or the batch


def test_two_stage_parts_split_the_foreground_only():
    truth = blob_grid(12, 12)
    truth[2:6, 3:7], truth[6:10, 3:7] = 1, 2  # an object made of two parts
    centres = torch.eye(16)[:3] * 3
    centres[2] = centres[1] * 0.3 + torch.eye(16)[2] * 2  # parts closer to each other than to the background
    f = grouped_features(truth, centres)
    method = DeepCut(loss="ncut", k=2, mode="parts", optimisation=Optimisation(steps=100, lr=1e-2))
    out = method(f, truth.shape, seed=0)
    assert torch.equal(out == 0, truth == 0)
    assert out[2:6, 3:7].unique().numel() == 1 and out[6:10, 3:7].unique().numel() == 1
    assert out[2:6, 3:7].unique() != out[6:10, 3:7].unique()
    with_bg = DeepCut(loss="ncut", k=2, mode="parts", split_background=True,
                      optimisation=Optimisation(steps=100, lr=1e-2))(f, truth.shape, seed=0)
    assert with_bg.unique().tolist() == list(range(with_bg.max() + 1))


def test_k_below_two_is_rejected():
    with pytest.raises(ValueError, match="loss.k"):
        DeepCut(k=1)(torch.randn(20, 4), (4, 5), seed=0)


def test_border_rule_and_boxes():
    labels = torch.full((6, 6), 7)
    labels[1:4, 2:5] = 3
    labels[5, 5] = 9  # a small cluster on the border does not outvote the frame's majority
    out = relabel_background_first(labels)
    assert out[0, 0] == 0 and out[2, 3] == 1 and out[5, 5] == 2
    box = mask_to_box(out == 1)
    assert box.tolist() == [2, 1, 5, 4]  # x0, y0, x1, y1 in pixel edges
    assert mask_to_box(torch.zeros(3, 3, dtype=torch.bool)) is None


def scene_grid():
    """Sky (top 4 rows), ground (the rest) and an object standing inside the ground, on a 12 x 12
    grid whose frame is 44 cells (a share of 0.31): sky has 18 of its 48 cells on the frame
    (0.38), ground 26 of 80 (0.33), the object none."""
    labels = torch.zeros(12, 12, dtype=torch.long)
    labels[4:] = 1
    labels[6:10, 4:8] = 2
    return labels


def test_frame_rule_takes_every_cluster_spread_over_the_frame_as_background():
    scene = scene_grid()
    # Border rule: the ground covers most of the frame and is the only background: sky counts as object.
    assert torch.equal(relabel_background_first(scene) > 0, scene != 1)
    # Frame rule: sky and ground both lie on the frame at least as often as the grid does.
    assert torch.equal(relabel_background_first(scene, "frame") > 0, scene == 2)
    # Two halves lie on the frame alike and both qualify: the one that is not the border rule's
    # background stays foreground. One cluster alone is background.
    halves = torch.zeros(6, 6, dtype=torch.long)
    halves[:, 3:] = 1
    assert torch.equal(relabel_background_first(halves, "frame"), relabel_background_first(halves))
    assert relabel_background_first(halves, "frame").sum() == 18
    assert relabel_background_first(torch.zeros(4, 4, dtype=torch.long), "frame").eq(0).all()


def test_deepcut_with_the_frame_rule_finds_the_object_between_two_scene_regions():
    scene = scene_grid()
    f = grouped_features(scene, torch.eye(16)[:3] * 3)
    # A restart can merge the sky and the object into one cluster (a local minimum, about 1 in 4):
    # the vote of 8 outvotes it.
    opt = Optimisation(steps=100, lr=1e-2, restarts=8)
    for seed in range(3):
        framed = DeepCut(loss="ncut", k=3, background="frame", optimisation=opt)(f, scene.shape, seed=seed)
        assert torch.equal(framed, (scene == 2).long())  # the restarts' vote: one foreground label
        bordered = DeepCut(loss="ncut", k=3, optimisation=opt)(f, scene.shape, seed=seed)
        assert torch.equal(bordered > 0, scene != 1)  # the border rule keeps the sky as object
    with pytest.raises(ConfigError, match="mode.background"):
        DeepCut(background="corners")


def test_bilinear_upsampling_cuts_the_patch_corners_and_keeps_straight_edges():
    corner = torch.tensor([[1, 0], [0, 0]])  # one foreground patch, 4x4 pixels each
    nearest = upsample_labels(corner, (8, 8))
    smooth = upsample_labels(corner, (8, 8), "bilinear")
    assert nearest[:4, :4].eq(1).all() and nearest.sum() == 16
    # Pixel (3, 3) sits 0.375 patches from both centres: indicator 0.625^2 = 0.39 < 0.5 -> background;
    # pixel (3, 0) only along one axis: 0.625 -> still foreground. The corner is cut diagonally.
    assert smooth[3, 3] == 0 and smooth[3, 0] == 1 and smooth[0, 0] == 1 and smooth[4:].eq(0).all()
    halves = torch.tensor([[2, 5], [2, 5]])  # a straight edge stays where nearest puts it
    assert torch.equal(upsample_labels(halves, (6, 8), "bilinear"), upsample_labels(halves, (6, 8)))
    parts = torch.tensor([[0, 1, 1], [0, 2, 1], [0, 2, 2]])
    assert set(upsample_labels(parts, (30, 30), "bilinear").unique().tolist()) == {0, 1, 2}
    with pytest.raises(ConfigError, match="postprocess.upsample='cubic'"):
        Postprocess(upsample="cubic")


def test_labels_follow_the_refined_mask():
    labels = torch.tensor([[0, 0, 0, 0], [0, 2, 2, 0], [0, 1, 1, 0], [0, 0, 0, 0]])
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[1:3, 1:4] = True  # the refinement drops nothing here, adds column 3 and rows 1-2
    mask[2, 1] = False     # and removes one part pixel
    out = labels_within(labels, mask)  # patch grid = image grid here
    assert torch.equal(out > 0, mask) and out.dtype == labels.dtype  # the labels' own dtype (int64), not bytes
    assert out[1, 3] == 2 and out[2, 3] == 1 and out[2, 2] == 1 and out[1, 1] == 2  # nearest part's label
    empty = torch.zeros(3, 3, dtype=torch.long)
    assert torch.equal(labels_within(empty, torch.ones(3, 3, dtype=torch.bool)), torch.ones(3, 3, dtype=torch.long))
    # At image size, a pixel the refinement adds takes the label of the nearest foreground patch.
    full = upsample_labels(labels, (8, 8))
    wide = torch.zeros(8, 8, dtype=torch.bool)
    wide[2:6, 2:8] = True
    out = labels_within(labels, wide)
    assert torch.equal(out > 0, wide) and out[2, 7] == 2 and out[5, 7] == 1 and torch.equal(out[2:6, 2:6], full[2:6, 2:6])


def test_the_box_comes_from_the_coarse_mask_unless_asked_for_the_refined_one():
    from PIL import Image
    rng = np.random.default_rng(0)
    image = (rng.random((96, 96, 3)) * 40).astype(np.uint8)
    image[20:60, 20:60] = 230  # the object; the patch labels (16 px patches) overshoot it by 4 px
    labels = torch.zeros(6, 6, dtype=torch.long)
    labels[1:4, 1:4] = 1
    coarse = Postprocess(bilateral=True)(labels, Image.fromarray(image))
    refined = Postprocess(bilateral=True, box_from="refined")(labels, Image.fromarray(image))
    assert torch.equal(coarse[1], refined[1]) and coarse[1].sum() < 48 * 48  # the solver shrank the mask
    assert coarse[2].tolist() == [16, 16, 64, 64]
    assert refined[2].sub(torch.tensor([20.0, 20, 60, 60])).abs().max() <= 1


def test_non_finite_features_fail_loudly():
    f = torch.randn(20, 4)
    f[3, 1] = float("nan")
    with pytest.raises(FloatingPointError, match="non-finite ncut loss"):
        DeepCut()(f, (4, 5), seed=0)
