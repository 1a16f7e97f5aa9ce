"""Smoke test of experiments/benchmark.py: it runs with tiny settings and writes its tables.
No timing is asserted here; the speed and memory targets are checked by the benchmark itself."""
import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "experiments" / "benchmark.py"


def load_script():
    spec = importlib.util.spec_from_file_location("benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_settings_compose_the_project_configs_on_top_of_the_paper_recipe():
    bench = load_script()
    assert bench.merge_overrides(["backbone=a", "graph=paper"], ["backbone=b", "+x=1"]) == ["backbone=b", "graph=paper", "+x=1"]
    paper = bench.compose_config([])
    assert paper.backbone.name == "vit_small_patch8_224.dino" and paper.backbone.weights == "random"
    assert bench.is_paper_setting(paper)
    for overrides in (["backbone=tiny_random"], ["graph=default"], ["backbone.stride=4"], ["optimizer.steps=20"]):
        assert not bench.is_paper_setting(bench.compose_config(overrides)), overrides


@pytest.mark.slow
def test_quick_run_writes_its_tables(tmp_path):
    out = tmp_path / "bench"
    run = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(out), "--strides", "8,4", "backbone=tiny_random"],
                         cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    text = (out / "results.md").read_text()
    assert text in run.stdout  # the report is printed too
    for heading in ("## Stage split", "## GNN stage: batching", "## Scaling", "## Feature cache", "## Targets"):
        assert heading in text
    assert "paper settings: False" in text and "| n/a |" in text  # targets are only judged at paper settings

    rows = pd.read_csv(out / "results.csv")
    stages = rows[rows.section == "stages"].set_index("metric")["median"]
    for stage in ("decode", "backbone", "graph", "gnn", "method", "post", "end_to_end", "images_per_s"):
        assert stages[stage] > 0 and math.isfinite(stages[stage]), stage
    assert {"batching", "default", "scaling", "cache"} <= set(rows.section)

    scaling = pd.read_csv(out / "scaling.csv")
    assert list(scaling.n) == [64, 64, 225, 225]  # tiny_random: 64 px, patch 8 -> 8x8 and 15x15 grids
    assert list(scaling.graph) == ["dense", "knn=16 masked dense"] * 2  # kNN graphs go sparse only above graph.dense_max_n
    assert (scaling.method_s > 0).all()
