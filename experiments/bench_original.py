"""DeepCut's GNN stage side by side with the original code (SAMPL-Weizmann/DeepCut), on identical
features in one process, interleaved, with the ViT-S/8 forward of the paper's settings for scale.

The original needs torch_geometric, which is no dependency of this project: run this script from a
throwaway environment that has it, next to a checkout of the original repository, e.g.

    python -m venv --system-site-packages /tmp/pygvenv          # then make the project's venv visible:
    echo /work/main/.venv/lib/python3.11/site-packages > /tmp/pygvenv/lib/python3.11/site-packages/project.pth
    /tmp/pygvenv/bin/pip install -c constraints.txt torch_geometric
    git clone https://github.com/SAMPL-Weizmann/DeepCut /tmp/deepcut_original
    /tmp/pygvenv/bin/python experiments/bench_original.py --original /tmp/deepcut_original

What is timed, per image (wall seconds, median over --repeats interleaved rounds):
  original   its segment.py's per-image work from features to labels: util.create_adj (paper eq. 5-6),
             util.load_data + torch_geometric Data (edge list of W > 0), GNNpool re-initialised from
             a saved state (an in-memory copy, not its model.pt file), 10 AdamW steps of its N-cut
             loss, argmax. Its image loading, ViT and post-processing are not included.
  paper      this project's DeepCut with the paper's recipe (experiment=base/paper), one image.
  default    the default configuration (graph=default optimizer=default), one image;
  default_r16  the same with 16 restarts;
  *_batch    paper / default on a batch of --batch images (the same features, other seeds), as
             run.py trains same-grid images together; per image = batch time / --batch.
  vit        the random-weight ViT-S/8 forward (vit_small_patch8_224, 280 px, stride 8: N = 1225)
             of one image, the scale the issue's "GNN stage <= 25% of the forward" refers to.
  matmuls    the float32 matrix products the paper recipe cannot do without, alone, in its order:
             W = F F^T (symmetric, graph.gram), W X, and per step the first layer's X~ W1, its weight
             gradient X~^T dZ and the loss's S^T W (10 steps and the eval pass). Every other op of
             the recipe comes on top, so original / matmuls bounds the ratio any exact float32
             implementation can reach on this machine.
The features are the random-weight ViT-S/8's last-layer keys of one photo (scikit-image's
astronaut), at stride 8 (N = 1225) and stride 4 (N = 4761): the same tensor goes to every method.
The original's util.py imports numba and cv2 at the top for functions not timed here; when they are
not installed, stand-ins are registered so that it imports.

--device cuda runs every method, the original's too, on the GPU (the original's create_adj stays
NumPy on the CPU, as in its segment.py); experiments/gpu_check.sh runs it on a lent GPU machine.

Writes results.md and results.csv to --out (default: outputs/bench_original/<date_time>).
"""
from __future__ import annotations

import argparse
import datetime
import importlib
import importlib.util
import os
import platform
import statistics
import sys
import time
import types
from pathlib import Path

import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]

from deepcut.api import compose_config, segmenter_from_config  # noqa: E402
from deepcut.graph import gram  # noqa: E402
from deepcut.loggers import git_state  # noqa: E402
from deepcut.pipeline import Extractor  # noqa: E402

PAPER_BACKBONE = ["backbone=dino_vits8", "backbone.weights=random", "backbone.resolution=280"]
SETTINGS = {"paper": ["experiment=base/paper", "backbone.weights=random"], "default": [], "default_r16": ["optimizer.restarts=16"]}


def load_original(path: Path):
    """The original's util and gnn_pool modules (stand-ins for numba/cv2 when absent)."""
    for name in ("numba", "cv2"):
        try:
            importlib.import_module(name)
        except ImportError:
            stub = types.ModuleType(name)
            stub.njit = lambda *a, **k: (lambda f: f)  # numba.njit(...) decorates discr_ncut, unused here
            sys.modules[name] = stub
    def load(name: str):  # from the checkout itself, under the names its modules import each other by
        spec = importlib.util.spec_from_file_location(name, path / f"{name}.py")
        module = sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    return load("util"), load("gnn_pool")


class Original:
    """The original's per-image loop body (segment.py, mode 0, N-cut) on given features."""

    def __init__(self, path: Path, steps: int = 10, device: torch.device = torch.device("cpu")):
        self.util, gnn_pool = load_original(path)
        from torch_geometric.data import Data
        self.data_class = Data
        self.device = device
        self.model = gnn_pool.GNNpool(384, 64, 32, 2, device).to(device)
        self.state = {k: v.clone() for k, v in self.model.state_dict().items()}
        self.steps = steps

    def memory_estimate(self, features: torch.Tensor) -> int:
        """Bytes the original's message passing holds: its edges are all pairs with W > 0, and
        torch_geometric keeps (edges, 64) messages, weighted messages and their gradients."""
        f = features.cpu().numpy()
        edges = int((self.util.create_adj(f, 0, 3) > 0).sum())
        return edges * 64 * 4 * 4

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        f = features.cpu().numpy()
        w = self.util.create_adj(f, 0, 3)
        node_feats, edge_index, edge_weight = self.util.load_data(w, f)
        data = self.data_class(node_feats, edge_index, edge_weight).to(self.device)
        self.model.load_state_dict(self.state)
        self.model.train()
        opt = torch.optim.AdamW(self.model.parameters(), lr=0.001)
        adjacency = torch.from_numpy(w).to(self.device)
        for _ in range(self.steps):
            opt.zero_grad()
            a, s = self.model(data, adjacency)
            loss = self.model.loss(a, s)
            loss.backward()
            opt.step()
        return torch.argmax(s.detach(), dim=-1)


def matmul_floor(features: torch.Tensor, steps: int = 10, hidden: int = 64, k: int = 2) -> None:
    """The float32 matrix products of the paper recipe on (N, C) features, nothing else (see the
    module's docstring): what an exact implementation cannot do without."""
    n, c = features.shape
    w = gram(features)
    x = torch.cat([w @ features, features.new_ones(n, 1)], dim=-1)  # X~ = [A_hat X, 1] (A_hat's scaling left out)
    x_t = x.T.contiguous()
    weight, grad, s_t = features.new_ones(c + 1, hidden), features.new_ones(n, hidden), features.new_ones(k, n)
    for _ in range(steps):
        x @ weight, x_t @ grad, s_t @ w
    x @ weight, s_t @ w  # the eval pass


def features_at(stride: int, device: str) -> tuple[torch.Tensor, tuple[int, int], Extractor]:
    import skimage.data
    from PIL import Image
    backbone = compose_config("deepcut", PAPER_BACKBONE).backbone
    extractor = Extractor(**{**backbone, "stride": stride}, device=device)
    image = extractor.preprocess(Image.fromarray(skimage.data.astronaut()))
    (features, grid), = extractor([image])
    return features, grid, extractor


def available_memory() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def timed(fn, device: torch.device) -> tuple[float, float]:
    """(wall, process CPU) seconds of fn(), its GPU work included. With one thread the CPU time is
    the work itself; the wall time also holds the waits for a core on a shared machine."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    sync()
    return time.perf_counter() - wall, time.process_time() - cpu


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--original", type=Path, required=True, help="checkout of SAMPL-Weizmann/DeepCut")
    p.add_argument("--strides", type=lambda s: [int(x) for x in s.split(",")], default=[8, 4])
    p.add_argument("--repeats", type=int, default=5, help="interleaved rounds at N = 1225")
    p.add_argument("--large-repeats", type=int, default=1, help="rounds above N = 2000 (the original takes minutes)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads (1: on a shared machine, threads of one op otherwise wait for each other)")
    p.add_argument("--batch", type=int, default=8, help="images per batch of the *_batch rows (run.py: backbone.batch_size)")
    p.add_argument("--device", default="cpu", help="cpu | cuda: where every method runs")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    out = args.out or REPO / "outputs" / "bench_original" / datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    out.mkdir(parents=True, exist_ok=True)
    original = Original(args.original, device=device)
    methods = {name: segmenter_from_config(compose_config("deepcut", PAPER_BACKBONE + overrides)).method
               for name, overrides in SETTINGS.items()}
    rows, notes, load0 = [], [], os.getloadavg()
    for stride in args.strides:
        features, grid, extractor = features_at(stride, args.device)
        n = features.shape[0]
        image = torch.randn(1, 3, 280, 280)
        runs = {
            "original": lambda: original(features),
            "matmuls": lambda: matmul_floor(features),
            "paper": lambda: methods["paper"].batch(features[None], grid, [0]),
            "default": lambda: methods["default"].batch(features[None], grid, [0]),
            "default_r16": lambda: methods["default_r16"].batch(features[None], grid, [0]),
        }
        if n < 2000:  # as run.py runs them: same-grid images train as one batch (per image: / batch)
            batch = features[None].expand(args.batch, -1, -1)
            seeds = list(range(args.batch))
            runs["paper_batch"] = lambda: methods["paper"].batch(batch, grid, seeds)
            runs["default_batch"] = lambda: methods["default"].batch(batch, grid, seeds)
        if stride == 8:  # the paper's forward, the scale
            runs["vit"] = lambda: extractor([image[0]])
        need = original.memory_estimate(features)
        if need > 0.5 * available_memory():
            note = f"original not run at N = {n}: its edge list needs ~{need / 2**30:.0f} GiB, {available_memory() / 2**30:.0f} GiB available"
            print(note, flush=True)
            notes.append(note)
            del runs["original"]
        for fn in runs.values():  # warm-up (and the original's first-call imports)
            if n < 2000:
                fn()
        times = {name: [] for name in runs}
        for r in range(args.repeats if n < 2000 else args.large_repeats):
            for name, fn in runs.items():
                try:
                    times[name].append(timed(fn, device))
                except (RuntimeError, MemoryError) as e:
                    print(f"N = {n} {name}: failed: {type(e).__name__}: {str(e).splitlines()[0][:120]}", flush=True)
                    times[name].append((float("nan"), float("nan")))
            print(f"N = {n} round {r + 1}: " + ", ".join(f"{k} {v[-1][0]:.3f} s (CPU {v[-1][1]:.3f})" for k, v in times.items()),
                  flush=True)
        for name, values in times.items():
            per = args.batch if name.endswith("_batch") else 1
            wall, cpu = [v[0] / per for v in values], [v[1] / per for v in values]
            rows.append({"n": n, "grid": f"{grid[0]}x{grid[1]}", "method": name, "median_s": statistics.median(wall),
                         "min_s": min(wall), "max_s": max(wall), "median_cpu_s": statistics.median(cpu),
                         "min_cpu_s": min(cpu), "repeats": len(values)})
    frame = pd.DataFrame(rows)
    frame.to_csv(out / "results.csv", index=False)
    git = git_state(REPO)
    lines = ["# DeepCut GNN stage vs the original code, side by side", "",
             f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
             f"- command: python experiments/bench_original.py {' '.join(argv if argv is not None else sys.argv[1:])}",
             f"- commit: {git['commit']}{' + uncommitted changes' if git['dirty'] else ''}",
             f"- original: SAMPL-Weizmann/DeepCut at {args.original}",
             f"- machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
             f"{torch.get_num_threads()} threads, device {args.device}"
             f"{f' ({torch.cuda.get_device_name(device)})' if device.type == 'cuda' else ''}; "
             f"load average start {tuple(round(x, 2) for x in load0)}, "
             f"end {tuple(round(x, 2) for x in os.getloadavg())}", "",
             "Seconds per image, median of interleaved rounds (CPU: the process's CPU time, the work "
             "itself with one thread; wall: also the waits for a core); ratios of medians. default: the "
             "configs' default (graph=default optimizer=default); default_r16: the same with 16 restarts.", ""]
    for clock, column in (("CPU", "median_cpu_s"), ("wall", "median_s")):
        lines += [f"{clock} time:", "",
                  "| N | original | paper recipe | original / paper | matmuls alone | original / matmuls | default "
                  "| original / default | default / ViT-S/8 forward | default_r16 | default_r16 / forward | ViT-S/8 forward "
                  "| paper, batch | original / paper, batch | default, batch | default, batch / forward |", "|" + "---|" * 16]
        for n, g in frame.groupby("n"):
            m = g.set_index("method")[column].reindex(["original", "paper", "matmuls", "default", "default_r16", "vit",
                                                       "paper_batch", "default_batch"])
            vit = None if m.isna()["vit"] else m["vit"]
            share = (lambda v: "-") if vit is None else (lambda v: f"{v / vit:.0%}")
            lines.append(f"| {n} | {m['original']:.3f} | {m['paper']:.4f} | {m['original'] / m['paper']:.0f}x | "
                         f"{m['matmuls']:.4f} | {m['original'] / m['matmuls']:.0f}x | "
                         f"{m['default']:.4f} | {m['original'] / m['default']:.0f}x | {share(m['default'])} | "
                         f"{m['default_r16']:.4f} | {share(m['default_r16'])} | {'-' if vit is None else f'{vit:.3f}'} | "
                         f"{m['paper_batch']:.4f} | {m['original'] / m['paper_batch']:.0f}x | {m['default_batch']:.4f} | "
                         f"{share(m['default_batch'])} |")
        lines.append("")
    lines += [f"- {note}" for note in notes] + ([""] if notes else [])
    lines += ["Every method:", "", "| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row) + " |"
              for row in frame.itertuples(index=False)]
    text = "\n".join(lines) + "\n"
    (out / "results.md").write_text(text)
    print(text, flush=True)
    print(f"written to {out}")


if __name__ == "__main__":
    main()
