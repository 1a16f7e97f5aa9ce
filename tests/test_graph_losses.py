"""Affinities and losses against their closed forms on small matrices."""
import math

import pytest
import torch

from deepcut.features import center
from deepcut.gnn import GNNBatch, _ELU, propagate
from deepcut.graph import affinity, cc_affinity, gram, keep_knn, ncut_affinity
from deepcut.losses import cc_loss, ncut_loss

F = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
# F F^T by hand: rows (1,0),(2,0),(0,1),(-1,0)
SIM = torch.tensor([[1.0, 2, 0, -1], [2, 4, 0, -2], [0, 0, 1, 0], [-1, -2, 0, 1]])


def test_ncut_affinity_is_paper_eq_5_6():
    expected = SIM.clamp_min(0) / 4  # negatives to 0, divided by the max (4)
    assert torch.equal(affinity(F), expected) and torch.equal(affinity(F, ncut_affinity), expected)


def test_cc_affinity_is_paper_eq_7():
    assert torch.allclose(affinity(F, cc_affinity, alpha=3.0), SIM - 4 / 3)
    with pytest.raises(ValueError, match="alpha"):
        affinity(F, cc_affinity, alpha=0)


def test_centred_features_and_l2_option():
    centred = F - F.mean(0)
    assert torch.equal(center(F), centred) and torch.allclose(center(F[None])[0], centred)  # per image
    assert torch.allclose(affinity(center(F), cc_affinity), centred @ centred.T - (centred @ centred.T).max() / 3)
    w = affinity(F, l2=True)
    assert torch.allclose(w.diagonal(), torch.ones(4))  # cosine self-similarity, max 1
    assert w[0, 1] == 1 and w[0, 2] == 0 and w[0, 3] == 0


def test_power_sharpens_ncut_affinity():
    assert torch.allclose(affinity(F, power=2.0), (SIM.clamp_min(0) / 4) ** 2)


def test_knn_keeps_each_nodes_strongest_edges_symmetrically():
    w = torch.tensor([[1.0, 0.9, 0.1], [0.9, 1.0, 0.2], [0.1, 0.2, 1.0]])
    kept = keep_knn(w, 2)
    # node 0 keeps {0,1}, node 1 {1,0}, node 2 {2,1}; edge (1,2) is kept because node 2 keeps it.
    assert torch.equal(kept, torch.tensor([[1.0, 0.9, 0.0], [0.9, 1.0, 0.2], [0.0, 0.2, 1.0]]))
    assert torch.equal(kept, kept.T)


def test_batched_affinity_equals_per_image():
    f = torch.randn(3, 10, 4, generator=torch.Generator().manual_seed(0))
    batched = affinity(center(f))
    for i in range(3):
        assert torch.allclose(batched[i], affinity(center(f[i])))


@pytest.mark.parametrize("n", [1, 5, 320, 321, 700])
def test_gram_mirrors_its_blocks_into_the_full_product(n):
    # Small integers: every dot product is exact, so any block left out or mirrored to the wrong
    # place shows as a difference, whatever the BLAS.
    f = torch.randint(-3, 4, (2, n, 6), generator=torch.Generator().manual_seed(n)).float()
    expected = torch.einsum("bic,bjc->bij", f, f)
    assert torch.equal(gram(f), expected)
    out = torch.full((n, n), float("nan"))
    assert gram(f[1], out) is out and torch.equal(out, expected[1])


def test_first_layer_gradient_from_the_stored_transpose_is_autograd_s():
    ax = torch.randn(2, 30, 5, generator=torch.Generator().manual_seed(0))
    model = GNNBatch([1, 2], 3, 5, 2, hidden=8, mlp_hidden=4, dropout=0.0)
    model(model.inputs(ax)).square().sum().backward()
    ours, model.flat.grad = model.flat.grad, None
    w1 = model.layers()[0]  # the same loss with the first layer as a plain autograd matmul
    x = torch.cat([ax, torch.ones(2, 30, 1)], dim=-1)
    h1 = torch.nn.functional.elu(torch.einsum("bnc,brch->brnh", x, w1))
    _, w2, b2, w3, b3 = model.layers()
    s = torch.softmax(torch.nn.functional.elu(h1 @ w2 + b2) @ w3 + b3, dim=-1)
    s.square().sum().backward()
    assert torch.allclose(ours, model.flat.grad, atol=1e-5)


def test_elu_through_exp_is_torch_s_elu_in_value_and_gradient():
    x = torch.cat([torch.linspace(-30, 30, 601), torch.tensor([0.0, -1e-8, 1e-8, -0.0])]).double()
    a = x.clone().requires_grad_()
    ours = _ELU.apply(a * 1)  # in place on a non-leaf, as in the GNN
    theirs = torch.nn.functional.elu(x.clone().requires_grad_())
    assert torch.allclose(ours, theirs, atol=1e-15, rtol=0)
    g = torch.randn_like(x)
    ours.backward(g)
    b = x.clone().requires_grad_()
    torch.nn.functional.elu(b).backward(g)
    assert torch.allclose(a.grad, b.grad, atol=1e-15, rtol=0)
    assert torch.equal(_ELU.apply(x[x > 0].clone()), x[x > 0])  # positives pass through exactly


def test_propagate_is_symmetric_normalised_adjacency():
    w = affinity(F)
    d = w.sum(1)
    a_hat = torch.diag(d.rsqrt()) @ w @ torch.diag(d.rsqrt())
    x = torch.randn(4, 3)
    assert torch.allclose(propagate(w, x), a_hat @ x, atol=1e-6)


def test_ncut_loss_closed_form():
    # Two blocks {0,1} and {2,3}: weight 1 inside, 0.25 across; S = the hard partition.
    w = torch.tensor([[1.0, 1, 0.25, 0.25], [1, 1, 0.25, 0.25], [0.25, 0.25, 1, 1], [0.25, 0.25, 1, 1]])
    s = torch.tensor([[1.0, 0], [1, 0], [0, 1], [0, 1]])
    # Tr(S^T W S) = 2 blocks x 4 = 8; degrees 2.5 each -> Tr(S^T D S) = 10; S^T S = 2I -> ortho term 0.
    assert ncut_loss(s, w, w.sum(-1)).item() == pytest.approx(-0.8)
    # All nodes in one cluster: cut term -1; S^T S = [[4,0],[0,0]] -> ||e1 e1^T - I/sqrt2||_F = sqrt(2 - sqrt2)
    one = torch.tensor([[1.0, 0]] * 4)
    assert ncut_loss(one, w, w.sum(-1)).item() == pytest.approx(-1 + math.sqrt(2 - math.sqrt(2)), abs=1e-6)


def test_ncut_degree_term_equals_dense_formula():
    g = torch.Generator().manual_seed(1)
    w = torch.rand(6, 6, generator=g, dtype=torch.float64)
    w = (w + w.T) / 2
    s = torch.softmax(torch.randn(6, 3, generator=g, dtype=torch.float64), -1)
    d = w.sum(-1)
    dense = -torch.trace(s.T @ w @ s) / torch.trace(s.T @ torch.diag(d) @ s)
    sts = s.T @ s
    ortho = torch.linalg.norm(sts / torch.linalg.norm(sts) - torch.eye(3, dtype=torch.float64) / math.sqrt(3))
    assert ncut_loss(s, w, d).item() == pytest.approx((dense + ortho).item(), rel=1e-9)


def test_cc_loss_closed_form():
    w = torch.tensor([[1.0, -2, 3], [-2, 1, 0.5], [3, 0.5, 1]])
    s = torch.tensor([[0.5, 0.5], [1, 0], [0, 1]])
    expected = -(w * (s @ s.T)).sum()  # -sum_ij W_ij (S S^T)_ij
    assert cc_loss(s, w).item() == pytest.approx(expected.item())
    assert torch.allclose(cc_loss(s, w), -torch.trace(s.T @ w @ s))


@pytest.mark.parametrize("graph", [{}, {"l2": True, "power": 2.0}, {"knn": 10, "dense_max_n": 100}],
                         ids=["dense", "l2-power", "sparse"])
@pytest.mark.parametrize("loss", ["ncut", "cc"])
def test_build_graph_returns_w_its_degrees_and_the_propagation(loss, graph):
    """build_graph's (W, A_hat X, degrees) against their definitions, for each image of a batch:
    W is the affinity of that image alone, the degrees its row sums, A_hat X = D^-1/2 W D^-1/2 X
    (by absolute degree where a CC graph has a non-positive one)."""
    from deepcut.graph import AFFINITIES
    from deepcut.fit import Graph, build_graph
    settings = Graph(**graph)
    f = center(torch.randn(1 if settings.knn else 3, 200, 16, generator=torch.Generator().manual_seed(2)))
    w, ax, degree = build_graph(f, settings, loss)
    for i in range(len(f)):
        expected = affinity(f[i], AFFINITIES[loss], l2=settings.l2, power=settings.power, knn=settings.knn)
        wi = w.to_dense() if w.is_sparse else w[i]
        assert torch.allclose(wi, expected, atol=1e-5)
        assert torch.allclose(degree[i], expected.sum(-1), atol=1e-4)
        d = expected.sum(-1)
        d = expected.abs().sum(-1) if (d <= 0).any() else d
        x = torch.nn.functional.normalize(f[i], dim=-1) if settings.l2 else f[i]
        assert torch.allclose(ax[i], d.rsqrt()[:, None] * expected * d.rsqrt() @ x, atol=1e-4)


@pytest.mark.parametrize("loss", ["ncut", "cc"])
def test_sparse_knn_graph_equals_the_dense_one(loss):
    from deepcut.graph import sparse_knn_affinity
    from deepcut.graph import AFFINITIES
    from deepcut.fit import Graph, Optimisation, build_graph, fit
    formula = AFFINITIES[loss]
    f = center(torch.randn(300, 16, generator=torch.Generator().manual_seed(0)))
    dense = affinity(f, formula, knn=10)
    sparse = sparse_knn_affinity(f, 10, formula, chunk=64)  # several chunks
    assert sparse.is_sparse and torch.allclose(sparse.to_dense(), dense, atol=1e-5)
    assert torch.allclose(propagate(sparse, f), propagate(dense, f), atol=1e-5)
    # Training on either graph gives the same clustering.
    opt = Optimisation(restarts=3)
    a = fit(*build_graph(f[None], Graph(knn=10), loss), [1], loss=loss, opt=opt)
    graph = build_graph(f[None], Graph(knn=10, dense_max_n=100), loss)
    assert graph[0].is_sparse
    b = fit(*graph, [1], loss=loss, opt=opt)
    assert torch.equal(a.ids, b.ids) and torch.allclose(a.losses, b.losses, rtol=1e-4)


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("sparse", [False, True])
def test_one_pass_gradient_equals_autograd(shared, sparse):
    """The loss's backward uses d Tr(S^T W S) / dS = 2 W S (W symmetric): same gradient as autograd
    through both matmuls, for a W of its own per assignment, shared by restarts, or sparse."""
    from deepcut.losses import association
    g = torch.Generator().manual_seed(5)
    w = torch.rand(7, 7, generator=g, dtype=torch.float64)
    w = (w + w.T) * (torch.rand(7, 7, generator=g, dtype=torch.float64) > 0.3)
    w = (w + w.T) / 2
    s = torch.softmax(torch.randn(2, 3, 7, 4, generator=g, dtype=torch.float64), -1).requires_grad_()
    d = w.sum(-1)
    reference = w.expand(2, 3, 7, 7)
    given = w.to_sparse() if sparse else w.expand(2, 1, 7, 7) if shared else reference
    expected = torch.stack([torch.stack([-torch.trace(x.T @ w @ x) for x in per]) for per in s])
    for fn, ref in ((lambda s_, w_: -association(s_, w_), expected),
                    (lambda s_, w_: ncut_loss(s_, w_, d.expand(2, 1, 7) if w_.dim() > 2 else d), None)):
        out = fn(s, given)
        grad, = torch.autograd.grad((out * torch.arange(1.0, 7, dtype=out.dtype).view(2, 3)).sum(), s)
        want = fn(s, reference.clone().requires_grad_())  # plain autograd path
        want_grad, = torch.autograd.grad((want * torch.arange(1.0, 7, dtype=out.dtype).view(2, 3)).sum(), s)
        assert torch.allclose(out, want) and torch.allclose(grad, want_grad)
        if ref is not None:
            assert torch.allclose(out, ref)
