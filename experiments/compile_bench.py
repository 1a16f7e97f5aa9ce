"""Issue 17: does torch.compile speed up the GNN stage on CPU? Paper recipe (1 restart) and default
(4 restarts) at N = 1225, C = 384 (ViT-S/8, 280 px, stride 8), random features, one thread: the
graph (W, A_hat X) and the fit, eager, then with GNNBatch.forward compiled (median CPU s of 7).

    python experiments/compile_bench.py        # prints; writes nothing
"""
import time, statistics, torch
from deepcut.fit import Graph, Optimisation, build_graph, fit
from deepcut import gnn as gnnmod
torch.set_num_threads(1)
torch.manual_seed(0)
f = torch.randn(1, 1225, 384)
def t(fn, n=7):
    fn(); out = []
    for _ in range(n):
        s = time.process_time(); fn(); out.append(time.process_time() - s)
    return statistics.median(out)
for name, restarts in [("paper (1 restart)", 1), ("default (4 restarts)", 4)]:
    opt = Optimisation(restarts=restarts, combine="best")
    g = lambda: build_graph(f, Graph(), "ncut")
    w, ax, d = g()
    tg = t(g)
    tf = t(lambda: fit(w, ax, d, [0], opt=opt))
    print(f"{name}: graph {tg:.4f} s, fit {tf:.4f} s (eager)")
# torch.compile of the GNN batch forward
eager_forward = gnnmod.GNNBatch.forward
compiled = torch.compile(eager_forward, dynamic=False)
gnnmod.GNNBatch.forward = lambda self, *a, **k: compiled(self, *a, **k)
for name, restarts in [("paper (1 restart)", 1), ("default (4 restarts)", 4)]:
    opt = Optimisation(restarts=restarts, combine="best")
    w, ax, d = build_graph(f, Graph(), "ncut")
    try:
        s0 = time.time(); fit(w, ax, d, [0], opt=opt); first = time.time() - s0
        tf = t(lambda: fit(w, ax, d, [0], opt=opt))
        print(f"{name}: fit {tf:.4f} s with torch.compile(GNNBatch.forward) (first call {first:.1f} s)")
    except Exception as e:
        print(f"{name}: torch.compile failed: {type(e).__name__}: {str(e)[:300]}")
