"""Where DeepCut's time and memory go, and whether the performance targets of issue 5 are met.

    python experiments/benchmark.py                          # paper settings, random ViT-S/8 weights (~1 min idle)
    python experiments/benchmark.py --settings default --sections stages   # what `python run.py` runs
    python experiments/benchmark.py backbone.weights=hub     # any Hydra override of configs/
    python experiments/benchmark.py --sections scaling --profile       # one section, with profiles
    python experiments/benchmark.py --quick backbone=tiny_random --out /tmp/bench   # smoke test

The settings are the project's own configs composed with the overrides given, on top of one of two
recipes (--settings): `paper` (the default) is exactly `experiment=base/paper` (no bilateral solver)
with a random-weight backbone of the paper's shape (backbone.weights=random), so it runs anywhere;
the weights do not change the timings. `default` is the configs' default, what `python run.py`
runs (the offline backbone, K = 5 with the frame rule, restarts, the bilateral solver). Inputs are
real photos shipped with scikit-image, decoded from their files.

Sections (--sections; times are medians of --repeats runs after a warm-up, per image = batch / images):
  stages          decode+resize, backbone forward, graph (W, degrees, A_hat X), GNN optimisation
                  (+ labels), mask post-processing, end-to-end, images/s, peak RSS / CUDA memory;
  batching        the GNN stage one image at a time vs all images as one batch (DeepCut.batch),
                  and the batch with one intra-op thread;
  default_config  the GNN stage with configs graph=default optimizer=default;
  scaling         the GNN stage at backbone stride patch, patch/2, patch/4 (ViT-S/8 at 280 px:
                  N = 1225, 4761, 18769), dense graph and kNN graph (graph.knn; sparse above
                  graph.dense_max_n); above --backbone-max-n tokens the ViT is not run (minutes on a
                  CPU) and the densest computed features are resampled to the finer grid;
  cache           a two-point sweep sharing one fresh feature cache: cold first point, warm second;
then the targets (TARGETS, a table: issues 5, 17 and 25) with the measured value and PASS/MISS,
each judged only at the settings it is for (paper or default; n/a otherwise).

Writes results.md (printed too), results.csv (one row per measurement), scaling.csv and, with
--profile, profile_n<N>.txt (the GNN stage's time by op) to --out, by default a new folder
outputs/benchmark/<date_time> (never over tracked files).
The stages are the library's own: the chain deepcut.api builds (extractor, method, post-processing);
"graph" is deepcut.build_graph on the same features, timed on its own, and "GNN
optimisation" the rest of the method's time. On a shared machine, read the times next to the
recorded load: with more runnable threads than cores, intra-op threads wait for each other, and
the many small ops of the GNN stage suffer most (compare the wall and CPU columns; --threads 1).
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import math
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from omegaconf import DictConfig

REPO = Path(__file__).resolve().parents[1]

from deepcut.fit import build_graph  # noqa: E402
from deepcut.methods.deepcut import DeepCut  # noqa: E402
from deepcut.seeds import derive_seed  # noqa: E402
from deepcut.api import segmenter_from_config  # noqa: E402
from deepcut.cache import FeatureCache  # noqa: E402
from deepcut.datasets import load_image  # noqa: E402
from deepcut.features import grid_size  # noqa: E402
from deepcut.loggers import git_state  # noqa: E402
from deepcut.tables import Table, to_markdown  # noqa: E402
from deepcut.pipeline import Extractor  # noqa: E402

from deepcut.config import compose_config as compose_run_config  # noqa: E402
from deepcut.overrides import operational, override_key  # noqa: E402

# The recipes --settings names, as overrides of configs/: the paper's is experiment=base/paper itself.
SETTINGS = {"paper": ["experiment=base/paper", "backbone.weights=random"], "default": []}
PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png",
          "motorcycle_right.png", "hubble_deep_field.jpg", "retina.jpg")
GIB = 2**30
SECTIONS = ("stages", "batching", "default_config", "scaling", "cache")
DEFAULT_SETTING = "graph=default optimizer=default"


# ---------------------------------------------------------------- settings

def merge_overrides(*lists: list[str]) -> list[str]:
    """Later overrides of the same key replace earlier ones (Hydra refuses two values for a group)."""
    out: dict[str, str] = {}
    for override in (o for lst in lists for o in lst):
        out[override.split("=", 1)[0].lstrip("+~")] = override
    return list(out.values())


def compose_config(overrides: list[str], settings: str = "paper") -> DictConfig:
    return compose_run_config("deepcut", merge_overrides(SETTINGS[settings], overrides))


def is_default_setting(settings: str, overrides: list[str]) -> bool:
    """The configs' default as run.py runs it: --settings default with operational overrides only."""
    return settings == "default" and all(operational(override_key(o)) for o in overrides)


def is_paper_setting(cfg: DictConfig) -> bool:
    """ViT-S/8 last-layer keys at 280 px, stride 8, K=2 N-cut, the paper's graph, GNN and 10 steps."""
    b, g, o = cfg.backbone, cfg.graph, cfg.optimizer
    return (b.name.startswith("vit_small_patch8") and b.stride == 8 and b.resolution == 280 and b.facet == "key"
            and b.layer == -1 and b.resize == "square" and b.precision == "fp32" and not b.model_kwargs
            and cfg.loss.name == "ncut" and cfg.loss.k == 2 and cfg.mode.name == "single" and cfg.mode.background == "border"
            and not (b.center or b.log_bin or g.l2 or g.knn) and g.power == 1.0
            and (cfg.gnn.hidden, cfg.gnn.mlp_hidden, cfg.gnn.dropout) == (64, 32, 0.25)
            and o.steps == 10 and o.lr == 1e-3 and o.restarts == 1 and o.tol is None)


# ---------------------------------------------------------------- clocks and memory

class Clock:
    """Wall time of with-blocks, accumulated per key, and the process's CPU time (all threads) under
    "cpu:" + key: on a shared machine, wall >> CPU / threads shows time lost waiting for a core.
    CUDA work is finished before reading the clocks."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    @contextlib.contextmanager
    def __call__(self, totals: dict, key: str):
        self.sync()
        start, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.sync()
            totals[key] += time.perf_counter() - start
            totals["cpu:" + key] += time.process_time() - cpu


def _proc_status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def process_peak_rss() -> int:
    """Bytes: the process's resident-set high-water mark (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


class PeakMemory:
    """Peak memory of a with-block above the level at its start: resident set (Linux: the VmHWM
    high-water mark, reset through /proc/self/clear_refs; elsewhere ru_maxrss, which only sees new
    process peaks, so a lower bound) and CUDA allocations (max_memory_allocated)."""

    cuda_max = 0  # the largest CUDA allocation peak any block saw (the stats are reset per block)

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def __enter__(self):
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.exact = _proc_status_kib("VmHWM") is not None
        except OSError:
            self.exact = False
        self.rss0 = _proc_status_kib("VmRSS") * 1024 if self.exact else process_peak_rss()
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.cuda0 = torch.cuda.memory_allocated()
        return self

    def __exit__(self, *exc):
        peak = _proc_status_kib("VmHWM") * 1024 if self.exact else process_peak_rss()
        self.rss = max(0, peak - self.rss0)
        if self.cuda:
            torch.cuda.synchronize()
            self.cuda_peak = torch.cuda.max_memory_allocated() - self.cuda0
            PeakMemory.cuda_max = max(PeakMemory.cuda_max, torch.cuda.max_memory_allocated())
        else:
            self.cuda_peak = float("nan")


def build_graphs(method: DeepCut, features: list[torch.Tensor]) -> None:
    """DeepCut's graph stage (W, A_hat X, degrees) for each image's (N, C) features, as its batch builds it."""
    for f in features:
        build_graph(f[None], method.graph, method.loss)


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "repeats": len(values)}


# ---------------------------------------------------------------- the measurements

class Bench:
    def __init__(self, cfg: DictConfig, args: argparse.Namespace):
        self.cfg, self.args = cfg, args
        self.segmenter = segmenter_from_config(cfg)
        self.extractor, self.method, self.post = self.segmenter.extractor, self.segmenter.method, self.segmenter.post
        self.device = self.extractor.device
        self.clock = Clock(self.device)
        if not isinstance(self.method, DeepCut):
            raise SystemExit(f"the benchmark times DeepCut (method=deepcut), not {cfg.method.name}")
        folder = Path(__import__("skimage.data", fromlist=["data"]).__file__).parent
        self.paths = [folder / PHOTOS[i % len(PHOTOS)] for i in range(args.images)]
        self.seeds = [derive_seed(cfg.seed, i) for i in range(args.images)]
        self.rows: list[dict] = []
        self.features = None

    def record(self, section: str, setting: str, metric: str, values: list[float] | float, unit: str = "s/image",
               n: int | None = None, batch: int | None = None, cpu: list[float] | None = None, **extra) -> dict:
        values = values if isinstance(values, list) else [values]
        row = {"section": section, "setting": setting, "n": n, "batch": batch, "metric": metric, "unit": unit,
               **summary(values), "cpu_median": statistics.median(cpu) if cpu else float("nan"),
               "load1": round(os.getloadavg()[0], 2), "threads": torch.get_num_threads(), **extra}
        self.rows.append(row)
        return row

    def log(self, message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.1f}] {message}", flush=True)

    # ------------------------------------------------ stage split

    def pipeline_pass(self) -> tuple[dict, list]:
        """Decode -> resize -> backbone -> DeepCut -> masks for all images, as run.py's loop does;
        then the graph stage alone on the same features (outside the end-to-end time)."""
        t: dict = defaultdict(float)
        clock = self.clock
        with clock(t, "end_to_end"):
            with clock(t, "decode"):
                images = [load_image(p) for p in self.paths]
                tensors = [self.extractor.preprocess(im) for im in images]
            with clock(t, "backbone"):
                features = [self.segmenter.prepare(*f) for f in self.extractor(tensors)]
            with clock(t, "method"):
                labels = self.segmenter.cluster(features, self.seeds)
            with clock(t, "post"):
                for lab, image in zip(labels, images):
                    self.post(lab, image)
        with clock(t, "graph"):
            build_graphs(self.method, [f for f, _ in features])
        t["gnn"], t["cpu:gnn"] = t["method"] - t["graph"], t["cpu:method"] - t["cpu:graph"]
        return t, features

    def stages(self) -> None:
        b = len(self.paths)
        self.log(f"stages: warm-up pass over {b} images")
        _, self.features = self.pipeline_pass()
        runs = []
        with PeakMemory(self.device) as mem:
            for i in range(self.args.repeats):
                t, self.features = self.pipeline_pass()
                runs.append({k: v / b for k, v in t.items()})
                split = ", ".join(f"{k} {v:.3f}" for k, v in runs[-1].items() if ":" not in k)
                self.log(f"stages: pass {i + 1}/{self.args.repeats}: {split}")
        n = self.features[0][0].shape[0]
        for key in ("decode", "backbone", "graph", "gnn", "method", "post", "end_to_end"):
            self.record("stages", "given", key, [r[key] for r in runs], n=n, batch=b, cpu=[r["cpu:" + key] for r in runs])
        self.record("stages", "given", "images_per_s", [1 / r["end_to_end"] for r in runs], unit="img/s", n=n, batch=b)
        self.record("stages", "given", "peak_rss_increase", mem.rss / GIB, unit="GiB", n=n, batch=b)
        self.record("stages", "given", "peak_cuda_allocated", mem.cuda_peak / GIB, unit="GiB", n=n, batch=b)

    # ------------------------------------------------ GNN stage alone

    def time_method(self, method, features: torch.Tensor, grid, seeds, repeats: int, one_at_a_time: bool = False):
        """Per-image graph / GNN / total times of DeepCut on (B, N, C) features, and the peak memory of the first run."""
        runs, mem = [], None
        for i in range(repeats):
            t: dict = defaultdict(float)
            with contextlib.ExitStack() as stack:
                if i == 0:
                    mem = stack.enter_context(PeakMemory(self.device))
                with self.clock(t, "graph"):
                    build_graphs(method, list(features))
                with self.clock(t, "method"):
                    if one_at_a_time:
                        for f, s in zip(features, seeds):
                            method.batch(f[None], grid, [s])
                    else:
                        method.batch(features, grid, seeds)
            t["gnn"], t["cpu:gnn"] = t["method"] - t["graph"], t["cpu:method"] - t["cpu:graph"]
            runs.append({k: v / len(features) for k, v in t.items()})
        return runs, mem

    def record_method(self, section, setting, runs, mem, n, batch, **extra):
        for key in ("graph", "gnn", "method"):
            self.record(section, setting, key, [r[key] for r in runs], n=n, batch=batch,
                        cpu=[r["cpu:" + key] for r in runs], **extra)
        self.record(section, setting, "peak_rss_increase", mem.rss / GIB, unit="GiB", n=n, batch=batch, **extra)
        self.record(section, setting, "peak_cuda_allocated", mem.cuda_peak / GIB, unit="GiB", n=n, batch=batch, **extra)

    def same_grid_features(self) -> torch.Tensor:
        """(B, N, C) features of the photos: the stage split's, or computed now."""
        if self.features is None:
            self.features = self.extractor([self.extractor.preprocess(load_image(p)) for p in self.paths])
        return torch.stack([f for f, _ in self.features])

    def batching(self) -> None:
        stacked = self.same_grid_features()
        grid, n = self.features[0][1], stacked.shape[1]
        threads = torch.get_num_threads()
        settings = [("one image at a time", True, threads), (f"batch of {len(stacked)}", False, threads)]
        if threads > 1 and self.device.type == "cpu":  # small ops wait for every intra-op thread: costly on a busy machine
            settings.append((f"batch of {len(stacked)}, 1 intra-op thread", False, 1))
        for setting, single, k in settings:
            torch.set_num_threads(k)
            try:
                runs, mem = self.time_method(self.method, stacked, grid, self.seeds, self.args.repeats, single)
                self.record_method("batching", setting, runs, mem, n, 1 if single else len(stacked))
            finally:
                torch.set_num_threads(threads)
            self.log(f"batching: {setting}: {statistics.median(r['method'] for r in runs):.3f} s/image")

    def default_config(self) -> None:
        cfg = compose_config(self.args.overrides + DEFAULT_SETTING.split(), self.args.settings)
        method = segmenter_from_config(cfg).method
        stacked = self.same_grid_features()
        runs, mem = self.time_method(method, stacked, self.features[0][1], self.seeds, min(self.args.repeats, 3))
        self.record_method("default", DEFAULT_SETTING, runs, mem, stacked.shape[1], len(stacked))
        self.log(f"default config: {statistics.median(r['method'] for r in runs):.3f} s/image")

    # ------------------------------------------------ scaling with N

    def scaling(self) -> list[dict]:
        cfg, args = self.cfg, self.args
        patch = self.extractor.patch
        strides = args.strides or [s for s in (patch, patch // 2, patch // 4) if s > 0 and patch % s == 0]
        image = self.extractor.preprocess(load_image(self.paths[0]))
        knn = cfg.graph.knn or args.knn
        table, computed = [], None  # computed: the densest real features so far, resampled for larger N
        for stride in strides:
            grid = grid_size(image.shape[1], image.shape[2], patch, stride)
            n = grid[0] * grid[1]
            if n > args.max_n:
                self.log(f"scaling: stride {stride} (N = {n}) skipped: above --max-n {args.max_n}")
                table.append({"stride": stride, "grid": f"{grid[0]}x{grid[1]}", "n": n, "graph": "-",
                              "note": f"skipped (N > --max-n {args.max_n})"})
                continue
            repeats = args.repeats if n <= args.repeat_max_n else 1
            backbone_s, source = float("nan"), "backbone"
            if n <= args.backbone_max_n or computed is None:
                extractor = Extractor(**{**cfg.backbone, "stride": stride}, device=cfg.device)
                if self.device.type == "cuda":
                    extractor([image])  # warm-up at this token count (the CPU was warmed up by the stage split)
                times = []
                for _ in range(min(repeats, 2)):
                    t: dict = defaultdict(float)
                    with self.clock(t, "backbone"):
                        (features, _), = extractor([image])
                    times.append(t["backbone"])
                backbone_s = statistics.median(times)
                self.record("scaling", "backbone", "backbone", times, n=n, batch=1, stride=stride)
                computed = (features, grid)
                del extractor
            else:  # the ViT forward at this token count takes minutes on a CPU: resample the densest grid run
                features, source = resample(*computed, grid), f"resampled from {computed[1][0]}x{computed[1][1]}"
            sparse_above = getattr(self.method.graph, "dense_max_n", math.inf)  # kNN graphs above this N are sparse
            for kind, k in (("dense", None), (f"knn={knn} " + ("sparse" if n > sparse_above else "masked dense"), knn)):
                method = replace(self.method, graph=replace(self.method.graph, knn=k))
                need = 5 * n * n * 4 if k is None or n <= sparse_above else 0  # dense W + temporaries: measured 3x W
                available = available_memory(self.device)
                row = {"stride": stride, "grid": f"{grid[0]}x{grid[1]}", "n": n, "graph": kind, "features": source,
                       "backbone_s": backbone_s, "dense_w_gib": n * n * 4 / GIB}
                if available is not None and need > available:
                    row["note"] = f"infeasible: needs ~{need / GIB:.1f} GiB, {available / GIB:.1f} GiB available"
                    self.log(f"scaling: N = {n} {kind}: {row['note']}")
                    table.append(row)
                    continue
                try:
                    runs, mem = self.time_method(method, features[None], grid, self.seeds[:1], repeats)
                except (RuntimeError, MemoryError) as e:  # CUDA OOM and allocation failures are results here
                    if self.device.type == "cuda":
                        torch.cuda.empty_cache()
                    row["note"] = f"failed: {type(e).__name__}: {str(e).splitlines()[0][:120]}"
                    self.log(f"scaling: N = {n} {kind}: {row['note']}")
                    table.append(row)
                    continue
                self.record_method("scaling", kind, runs, mem, n, 1, stride=stride)
                row.update({key + "_s": statistics.median(r[key] for r in runs) for key in ("graph", "gnn", "method")})
                row["method_cpu_s"] = statistics.median(r["cpu:method"] for r in runs)
                row.update(repeats=repeats, peak_rss_gib=mem.rss / GIB, peak_cuda_gib=mem.cuda_peak / GIB)
                table.append(row)
                self.log(f"scaling: stride {stride} N = {n} {kind}: GNN stage {row['method_s']:.3f} s, "
                         f"peak RSS +{row['peak_rss_gib']:.2f} GiB ({repeats} runs)")
            if args.profile and n <= args.repeat_max_n:
                profile(self.method, features, grid, self.seeds[0], self.device, args.out / f"profile_n{n}.txt")
        return table

    # ------------------------------------------------ feature cache

    def cache(self) -> None:
        """Two points of a sweep over graph/optimiser settings in one process, sharing a fresh cache."""
        points = [("cold (first point)", self.args.overrides), ("warm (second point)", self.args.overrides + ["graph=default"])]
        with tempfile.TemporaryDirectory(prefix="deepcut-bench-cache-") as tmp:
            cache = FeatureCache(tmp)
            for setting, overrides in points:
                cfg = compose_config(overrides, self.args.settings)
                t: dict = defaultdict(float)
                with self.clock(t, "setup"):  # paid once per sweep job: the model and its fingerprint
                    segmenter = segmenter_from_config(cfg, cache=cache)
                    extractor = segmenter.extractor
                with self.clock(t, "images"):
                    images = [load_image(p) for p in self.paths]
                    features = [segmenter.prepare(*f) for f in extractor([extractor.preprocess(im) for im in images])]
                    for lab, image in zip(segmenter.cluster(features, self.seeds), images):
                        self.post(lab, image)
                b = len(images)
                self.record("cache", setting, "per_image", t["images"] / b, n=features[0][0].shape[0], batch=b)
                self.record("cache", setting, "setup", t["setup"], unit="s", batch=b)
                self.record("cache", setting, "point", t["setup"] + t["images"], unit="s", batch=b)
                self.log(f"cache: {setting}: setup {t['setup']:.2f} s + {t['images'] / b:.3f} s/image")


def resample(features: torch.Tensor, grid: tuple[int, int], new_grid: tuple[int, int]) -> torch.Tensor:
    """(h*w, C) features on `grid` -> bilinearly resampled (H*W, C) features on `new_grid`."""
    f = features.T.reshape(1, -1, *grid)
    return F.interpolate(f, size=new_grid, mode="bilinear", align_corners=True)[0].flatten(1).T.contiguous()


def available_memory(device: torch.device) -> int | None:
    """Bytes free for a new allocation on `device` (CUDA: free device memory; CPU: MemAvailable)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def profile(method, features, grid, seed, device, path: Path) -> None:
    """Where one DeepCut call's time goes (after a warm-up): the graph stage timed alone, the
    top-level regions torch.profiler sees (autograd backward, optimiser, other ops) and its op table.
    On CUDA the regions are CPU-side (launch) times; the op table is sorted by CUDA time."""
    activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if device.type == "cuda" else [])
    method(features, grid, seed=seed)
    clock, t = Clock(device), defaultdict(float)
    with clock(t, "graph"):
        build_graphs(method, [features])
    with torch.profiler.profile(activities=activities, record_shapes=True) as prof:
        start = time.perf_counter()
        method(features, grid, seed=seed)
        clock.sync()
        wall = time.perf_counter() - start
    regions = defaultdict(float)
    for event in prof.events():
        if event.cpu_parent is not None:
            continue
        name = event.name
        if name.startswith("autograd::engine"):
            name = "backward (autograd)"
        elif name.startswith("Optimizer."):
            name = "optimizer " + name.rsplit(".", 1)[-1]
        else:
            name = "other ops of DeepCut.batch (graph, forward, loss, labels)"
        regions[name] += event.cpu_time_total / 1e6
    regions["Python between ops (wall - profiled)"] = wall - sum(regions.values())
    lines = [f"DeepCut at N = {features.shape[0]}, one image, {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.1f}: "
             f"{wall:.3f} s wall (under the profiler); graph stage alone {t['graph']:.4f} s", "",
             "region                                                      s     share"]
    lines += [f"{k:56s} {v:7.4f} {v / wall:6.1%}" for k, v in sorted(regions.items(), key=lambda kv: -kv[1])]
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    path.write_text("\n".join(lines) + "\n\n" + prof.key_averages(group_by_input_shape=True).table(
        sort_by=sort, row_limit=30, max_name_column_width=40, max_shapes_column_width=60) + "\n")


# ---------------------------------------------------------------- targets and report

# The targets, as data: the measured value is a measurement (section, setting, metric), or a
# scaling-table cell (n, graph, column), optionally divided by another measurement ("per"); it must
# stay <= "max" or >= "min". Judged (PASS/MISS) only at the settings it is for ("for": paper|default).
STAGE = ("stages", "given")
TARGETS = [
    {"target": "paper: GNN stage (graph + GNN + labels) per image", "value": (*STAGE, "method"), "max": 0.08, "unit": "s"},
    {"target": "paper: GNN stage / backbone forward", "value": (*STAGE, "method"), "per": (*STAGE, "backbone"),
     "max": 0.25, "unit": "%"},
    {"target": "paper: end-to-end / backbone forward", "value": (*STAGE, "end_to_end"), "per": (*STAGE, "backbone"),
     "max": 1.3, "unit": "x"},
    {"target": "default config: GNN stage / backbone forward (issue 17)", "value": ("default", DEFAULT_SETTING, "method"),
     "per": (*STAGE, "backbone"), "max": 0.25, "unit": "%"},
    {"target": "stride 4 (N = 4761): GNN stage", "cell": (4761, "dense", "method_s"), "max": 1.5, "unit": "s"},
    {"target": "stride 4 (N = 4761): peak RSS increase", "cell": (4761, "dense", "peak_rss_gib"), "max": 2.0, "unit": "GiB"},
    {"target": "cache: warm sweep point vs cold, per image", "value": ("cache", "cold (first point)", "per_image"),
     "per": ("cache", "warm (second point)", "per_image"), "min": 5.0, "unit": "x"},
    {"target": "default: mask post-processing / backbone forward (issue 25)", "for": "default", "value": (*STAGE, "post"),
     "per": (*STAGE, "backbone"), "max": 0.30, "unit": "%"},
]
FORMATS = {"s": "{:.3f} s", "%": "{:.1%}", "x": "{:.2f}x", "GiB": "{:.2f} GiB"}


def targets(rows: pd.DataFrame, scaling: list[dict], judged: str | None) -> list[dict]:
    """TARGETS judged: PASS/MISS for the targets of the settings `judged` ("paper", "default";
    n/a for the others, for None, or when not measured); then REPORT/INFO rows, which are not judged."""
    def value(section, setting, metric):
        hit = rows[(rows.section == section) & (rows.setting == setting) & (rows.metric == metric)] if len(rows) else []
        return float(hit["median"].iloc[0]) if len(hit) else float("nan")

    cells = {(r["n"], r["graph"]): r for r in scaling}
    out = []
    for spec in TARGETS:
        v = value(*spec["value"]) if "value" in spec else float(cells.get(spec["cell"][:2], {}).get(spec["cell"][2], "nan"))
        if "per" in spec:
            v /= value(*spec["per"])
        limit = f"<= {FORMATS[spec['unit']].format(spec['max'])}" if "max" in spec else f">= {FORMATS[spec['unit']].format(spec['min'])}"
        ok = v <= spec["max"] if "max" in spec else v >= spec["min"]
        out.append({"target": spec["target"], "measured": "-" if math.isnan(v) else FORMATS[spec["unit"]].format(v),
                    "limit": limit, "status": "n/a" if spec.get("for", "paper") != judged or math.isnan(v) else "PASS" if ok else "MISS"})
    for (n, kind), r in sorted(cells.items()):
        if n > 4761:
            measured = f"{r['method_s']:.2f} s, peak RSS +{r['peak_rss_gib']:.2f} GiB" if "method_s" in r else r.get("note", "-")
            out.append({"target": f"stride 2 (N = {n}), {kind} graph", "measured": measured, "limit": "report",
                        "status": "REPORT"})
    cold_pt, warm_pt = value("cache", "cold (first point)", "point"), value("cache", "warm (second point)", "point")
    out.append({"target": "cache: same, whole point incl. model build + fingerprint",
                "measured": f"{cold_pt / warm_pt:.1f}x ({cold_pt:.2f} -> {warm_pt:.2f} s)", "limit": "(info)", "status": "INFO"})
    return out


def markdown_table(frame: pd.DataFrame) -> str:
    """A table of figures, written by deepcut.tables' Markdown writer (one for every table)."""
    def fmt(v):
        if isinstance(v, float):
            return "-" if math.isnan(v) else f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
        return "-" if v is None else str(v)
    rows = [[fmt(v) for v in row] for row in frame.itertuples(index=False)]
    return to_markdown(Table("", [str(c) for c in frame.columns], rows)).rstrip("\n")


STAGE_NAMES = {"decode": "decode + resize", "backbone": "backbone forward", "graph": "graph (affinity + propagation)",
               "gnn": "GNN optimisation (+ labels)", "method": "= GNN stage (graph + GNN)", "post": "mask post-processing",
               "end_to_end": "end-to-end", "images_per_s": "images / s", "peak_rss_increase": "peak RSS increase",
               "peak_cuda_allocated": "peak CUDA allocated"}


def report(rows: pd.DataFrame, scaling: list[dict], checks: list[dict], header: dict) -> str:
    out = ["# DeepCut benchmark", ""]
    out += [f"- {k}: {v}" for k, v in header.items()]

    def section(*names):
        f = rows[rows.section.isin(names)].copy() if len(rows) else pd.DataFrame(columns=["metric"])
        f["stage"] = f.metric.map(lambda m: STAGE_NAMES.get(m, m))
        return f

    f = section("stages")
    if len(f):
        end = float(f[f.metric == "end_to_end"]["median"].iloc[0])
        f["share"] = [f"{m / end:.0%}" if u == "s/image" and k != "end_to_end" and not math.isnan(m) else ""
                      for m, u, k in zip(f["median"], f.unit, f.metric)]
        out += ["", f"## Stage split ({int(f.batch.iloc[0])} images, N = {int(f.n.iloc[0])}, "
                    f"median of {int(f.repeats.max())} passes)", "",
                "s/image: wall time per image; cpu_median: the process's CPU time (all threads) for the same stage.", "",
                markdown_table(f[["stage", "median", "min", "max", "unit", "share", "cpu_median", "load1"]])]
    f = section("batching", "default")
    if len(f):
        table = []
        for (name, setting), g in f.groupby(["section", "setting"], sort=False):
            m = g.set_index("metric")
            table.append({"section": name, "setting": setting, "batch": m.batch["method"], "threads": m.threads["method"],
                          "graph s": m["median"]["graph"], "GNN optimisation s": m["median"]["gnn"],
                          "GNN stage s": m["median"]["method"], "min": m["min"]["method"], "max": m["max"]["method"],
                          "GNN stage CPU s": m.cpu_median["method"], "peak RSS + GiB": m["median"]["peak_rss_increase"],
                          "load1": m.load1["method"]})
        out += ["", "## GNN stage: batching, threads and the default config (per image, median)", "",
                markdown_table(pd.DataFrame(table))]
    if scaling:
        cols = ["stride", "grid", "n", "graph", "features", "dense_w_gib", "backbone_s", "graph_s", "gnn_s", "method_s",
                "method_cpu_s", "repeats", "peak_rss_gib", "peak_cuda_gib", "note"]
        out += ["", "## Scaling of the GNN stage with N (one image, s)", "",
                "backbone_s: the ViT forward at that stride; graph_s + gnn_s = method_s, the GNN stage (method_cpu_s: its CPU "
                "time); peak_rss_gib: peak resident-set increase during the GNN stage; dense_w_gib: one dense N x N float32.", "",
                markdown_table(pd.DataFrame(scaling).reindex(columns=cols))]
    f = section("cache")
    if len(f):
        out += ["", "## Feature cache: two sweep points on the same images, fresh cache", "",
                markdown_table(f[["setting", "metric", "median", "unit", "batch", "load1"]])]
    judged = header["targets judged for"]
    out += ["", "## Targets (issues 5, 17 and 25)" + (f": those for the {judged} settings judged" if judged
                                                       else ": n/a, the settings are neither the paper's nor the default"), "",
            markdown_table(pd.DataFrame(checks))]
    return "\n".join(out) + "\n"


def default_out() -> Path:
    """A new folder under the git-ignored outputs/: a run never writes over tracked files."""
    return REPO / "outputs" / "benchmark" / datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S-%f")


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=None, help="output folder (default: outputs/benchmark/<date_time>)")
    p.add_argument("--images", type=int, default=8, help="photos per pass (one batch; cycled from scikit-image's)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per measurement (median reported)")
    p.add_argument("--strides", type=lambda s: [int(x) for x in s.split(",")], default=None,
                   help="backbone strides of the scaling table (default: patch, patch/2, patch/4)")
    p.add_argument("--knn", type=int, default=16, help="k of the kNN graph in the scaling table (unless graph.knn is set)")
    p.add_argument("--max-n", type=int, default=25000, help="skip scaling points with more nodes")
    p.add_argument("--repeat-max-n", type=int, default=5000, help="scaling points with more nodes run once")
    p.add_argument("--backbone-max-n", type=int, default=5000,
                   help="above this many tokens the ViT is not run: features are resampled from the densest computed grid")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--profile", action="store_true", help="write torch.profiler tables of the GNN stage (profile_n<N>.txt)")
    p.add_argument("--sections", type=lambda s: s.split(","), default=list(SECTIONS),
                   help=f"comma-separated subset of {','.join(SECTIONS)}")
    p.add_argument("--settings", choices=sorted(SETTINGS), default="paper",
                   help="the recipe the overrides apply to: paper (experiment=base/paper, random weights) or default (run.py's)")
    p.add_argument("--quick", action="store_true", help="smoke test: 2 images, 1 repeat")
    p.add_argument("overrides", nargs="*", help="Hydra overrides of configs/ (e.g. backbone.weights=hub device=cuda)")
    args = p.parse_args(argv)
    if set(args.sections) - set(SECTIONS):
        p.error(f"--sections: choose from {','.join(SECTIONS)}")
    if args.quick:
        args.images, args.repeats = 2, 1
    return args


def main(argv: list[str] | None = None) -> pd.DataFrame:
    args = parse(sys.argv[1:] if argv is None else argv)
    args.out = args.out or default_out()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = compose_config(args.overrides, args.settings)
    started, load0 = time.time(), os.getloadavg()
    bench = Bench(cfg, args)
    paper = is_paper_setting(cfg)
    judged = "paper" if paper else "default" if is_default_setting(args.settings, args.overrides) else None
    bench.log(f"{cfg.backbone.name} ({cfg.backbone.weights}) stride {cfg.backbone.stride} {cfg.backbone.resolution} px "
              f"on {bench.device}, {torch.get_num_threads()} threads; paper settings: {paper}; targets judged for: {judged}")
    scaling = []
    for name in args.sections:
        result = getattr(bench, name)()
        scaling = result if name == "scaling" else scaling
    rows = pd.DataFrame(bench.rows)
    checks = targets(rows, scaling, judged)
    git = git_state(REPO)
    header = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join(["python experiments/benchmark.py", *(argv if argv is not None else sys.argv[1:])]),
        "overrides": " ".join(merge_overrides(SETTINGS[args.settings], args.overrides)),
        "paper settings": paper,
        "targets judged for": judged,
        "commit": f"{git['commit']}{' + uncommitted changes' if git['dirty'] else ''}",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads, "
                   f"device {bench.device}" + (f" ({torch.cuda.get_device_name()})" if bench.device.type == "cuda" else ""),
        "load average (1, 5, 15 min)": f"start {tuple(round(x, 2) for x in load0)}, "
                                       f"end {tuple(round(x, 2) for x in os.getloadavg())}",
        "process peak RSS": f"{process_peak_rss() / GIB:.2f} GiB",
        "peak CUDA allocated": (f"{max(PeakMemory.cuda_max, torch.cuda.max_memory_allocated()) / GIB:.2f} GiB"
                                if bench.device.type == "cuda" else "- (no CUDA)"),
        "wall time": f"{time.time() - started:.0f} s",
    }
    text = report(rows, scaling, checks, header)
    rows.to_csv(args.out / "results.csv", index=False)
    pd.DataFrame(scaling).to_csv(args.out / "scaling.csv", index=False)
    (args.out / "results.md").write_text(text)
    print("\n" + text, flush=True)
    return rows


if __name__ == "__main__":
    main()
