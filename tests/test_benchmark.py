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
    # The paper recipe is experiment=base/paper itself: no bilateral solver (it once timed the solver).
    run_paper = bench.compose_run_config("deepcut", ["experiment=base/paper"])
    assert paper.postprocess == run_paper.postprocess and not paper.postprocess.bilateral
    assert {g: paper[g] for g in ("graph", "gnn", "loss", "optimizer", "mode")} == \
        {g: run_paper[g] for g in ("graph", "gnn", "loss", "optimizer", "mode")}
    for overrides in (["backbone=tiny_random"], ["backbone.center=true"], ["backbone.stride=4"], ["optimizer.steps=20"]):
        assert not bench.is_paper_setting(bench.compose_config(overrides)), overrides
    # --settings default is what run.py runs; operational overrides keep it the default.
    assert bench.compose_config([], "default") == bench.compose_run_config("deepcut")
    assert not bench.is_paper_setting(bench.compose_config([], "default"))
    assert bench.is_default_setting("default", ["device=cpu", "num_workers=2"])
    assert not bench.is_default_setting("default", ["loss.k=3"]) and not bench.is_default_setting("paper", [])


def test_targets_are_data_judged_at_paper_settings_only():
    bench = load_script()
    for spec in bench.TARGETS:
        assert ("max" in spec) != ("min" in spec) and spec["unit"] in bench.FORMATS and ("value" in spec) != ("cell" in spec)
    stage = lambda metric, median: {"section": "stages", "setting": "given", "metric": metric, "median": median}  # noqa: E731
    rows = pd.DataFrame([stage("method", 0.05), stage("backbone", 0.4), stage("end_to_end", 0.6),
                         {"section": "default", "setting": bench.DEFAULT_SETTING, "metric": "method", "median": 0.12}])
    scaling = [{"n": 4761, "graph": "dense", "method_s": 2.0, "peak_rss_gib": 0.5}]
    checks = {c["target"]: c for c in bench.targets(rows, scaling, "paper")}
    assert checks["paper: GNN stage (graph + GNN + labels) per image"]["status"] == "PASS"  # 0.05 <= 0.08
    assert checks["paper: GNN stage / backbone forward"]["measured"] == "12.5%"
    assert checks["paper: end-to-end / backbone forward"]["status"] == "MISS"  # 1.5x > 1.3x
    assert checks["default config: GNN stage / backbone forward (issue 17)"]["measured"] == "30.0%"
    assert checks["default config: GNN stage / backbone forward (issue 17)"]["status"] == "MISS"
    assert checks["stride 4 (N = 4761): GNN stage"]["status"] == "MISS"
    assert checks["stride 4 (N = 4761): peak RSS increase"]["status"] == "PASS"
    assert checks["cache: warm sweep point vs cold, per image"]["status"] == "n/a"  # not measured
    assert checks["default: mask post-processing / backbone forward (issue 25)"]["status"] == "n/a"  # not these settings
    assert {c["status"] for c in bench.targets(rows, scaling, None)} <= {"n/a", "INFO"}
    rows = pd.concat([rows, pd.DataFrame([stage("post", 0.1)])])
    default = {c["target"]: c for c in bench.targets(rows, scaling, "default")}
    assert default["default: mask post-processing / backbone forward (issue 25)"]["measured"] == "25.0%"
    assert default["default: mask post-processing / backbone forward (issue 25)"]["status"] == "PASS"  # <= 30 %
    assert default["paper: end-to-end / backbone forward"]["status"] == "n/a"


def test_default_output_is_a_new_ignored_folder():
    bench = load_script()
    out = bench.default_out()
    assert out.parent == REPO / "outputs" / "benchmark" and not out.exists()
    ignored = subprocess.run(["git", "check-ignore", "-q", str(out / "results.md")], cwd=REPO)
    assert ignored.returncode == 0  # git-ignored: a run leaves the working tree clean
    assert not (REPO / "experiments" / "benchmark" / "results.md").exists()  # no tracked results to overwrite


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
