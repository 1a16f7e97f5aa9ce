"""The experiment framework: every experiment/launcher/sweeper config composes, and real sweeps run
through the joblib, submitit-local and optuna plugins, then experiments/tables.py turns them
into the tables (subprocesses through Hydra, as a user runs them)."""
import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import timm
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.object_type import ObjectType
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import get_object, instantiate
from omegaconf import OmegaConf
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
from deepcut import tables
from deepcut.methods import create_method
from helpers import job_dirs

EXPERIMENTS = sorted(str(p.relative_to(CONFIGS / "experiment").with_suffix("")) for p in (CONFIGS / "experiment").rglob("*.yaml"))
PAPER = [e for e in EXPERIMENTS if e.startswith("paper_")]
PAPER_NUMBERS = OmegaConf.to_container(OmegaConf.load(tables.PAPER_NUMBERS))
DEV_TABLES = PAPER_NUMBERS.pop("dev_tables")  # the tables of experiments/paper_tables.sh
TINY = ["backbone=tiny_random"]
IN_TURN = ["launcher=basic"]  # sweeps whose jobs are quick: no worker processes to start


def run(*args, cwd=ROOT, env=None):
    proc = subprocess.run([sys.executable, str(ROOT / "run.py"), *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "HYDRA_FULL_ERROR": "1", **(env or {})}, timeout=600)
    if proc.returncode:
        raise AssertionError(f"run.py {args} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def compose_config(*overrides, hydra=False):
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=hydra)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Two of the bundled photos, small, with a box-shaped ground-truth mask: a folder dataset with metrics."""
    import skimage.data
    root = tmp_path_factory.mktemp("photos")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    for name in ("astronaut", "chelsea"):
        Image.fromarray(getattr(skimage.data, name)()).resize((96, 64)).save(root / "images" / f"{name}.png")
        mask = np.zeros((64, 96), np.uint8)
        mask[16:48, 24:72] = 255
        Image.fromarray(mask).save(root / "masks" / f"{name}.png")
    return ["dataset=folder", f"dataset.root={root}"]


def summaries(sweep: Path) -> dict[str, dict]:
    return {num: json.loads((job / "summary.json").read_text()) for num, job in job_dirs(sweep).items()
            if (job / "summary.json").exists()}


def markdown_rows(path: Path) -> list[list[str]]:
    """The data rows of the first table in a Markdown file, as cells."""
    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|---"))
    rows = []
    for line in lines[start + 1:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split(" | ")])
    return rows


# ------------------------------------------------------------------ composition (fast)

@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_resolves_and_instantiates(experiment):
    cfg = compose_config(f"experiment={experiment}", hydra=True)
    assert cfg.hydra.runtime.choices.experiment == experiment
    cfg = compose_config(f"experiment={experiment}")
    OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    assert callable(create_method(cfg))
    instantiate(cfg.logger)
    assert isinstance(get_object(cfg.dataset._target_), type)  # building it needs the data
    assert timm.is_model(cfg.backbone.name)


@pytest.mark.parametrize("experiment", PAPER)
def test_paper_experiments_use_the_paper_settings(experiment):
    cfg = compose_config(f"experiment={experiment}")
    table = experiment.split("_")[1]
    if table != "table4":
        assert cfg.backbone.name == "vit_small_patch8_224.dino" and cfg.backbone.stride == 8
        assert cfg.backbone.resolution == 280
    assert (cfg.backbone.facet, cfg.backbone.layer, cfg.backbone.resize) == ("key", -1, "square")
    assert cfg.backbone.center is False and cfg.backbone.log_bin == 0
    assert cfg.graph.affinity is None and cfg.graph.l2 is False and cfg.graph.knn is None
    assert cfg.graph.power == 1.0 and cfg.loss.ortho_weight == 1.0
    assert (cfg.optimizer.lr, cfg.optimizer.restarts, cfg.optimizer.combine) == (1e-3, 1, "best")
    assert cfg.optimizer.tol is None and cfg.optimizer.weight_decay == 0.01
    assert (cfg.gnn.hidden, cfg.gnn.mlp_hidden, cfg.gnn.dropout) == (64, 32, 0.25)
    assert cfg.optimizer.steps == (100 if table == "table3" else 10)
    assert cfg.postprocess.bilateral is False
    if cfg.loss.name == "cc":
        assert (cfg.loss.k, cfg.graph.alpha) == (10, 3.0)
    elif table == "table3":
        assert (cfg.mode.name, cfg.loss.k) == ("parts", 4)
    else:
        assert (cfg.mode.name, cfg.loss.k) == ("single", 2)
    # the objective is the metric its paper table reports
    cells = [c for t in PAPER_NUMBERS.values() for r in t["rows"] for c in r["cells"].values()
             if c.get("experiment") == experiment]
    metrics = {c.get("metric") or t["metric"] for t in PAPER_NUMBERS.values() for r in t["rows"]
               for c in r["cells"].values() if c.get("experiment") == experiment}
    assert cells and cfg.objective in metrics


def test_paper_numbers_name_existing_experiments_and_summary_keys():
    for name, table in PAPER_NUMBERS.items():
        for row in table["rows"]:
            for column, cell in row["cells"].items():
                assert column in table["columns"], (name, column)
                assert isinstance(cell["paper"], float)
                if "experiment" in cell:
                    assert cell["experiment"] in PAPER
                    assert (cell.get("metric") or table["metric"]) in ("miou", "corloc", "nmi", "ari")
    used = {c["experiment"] for t in PAPER_NUMBERS.values() for r in t["rows"] for c in r["cells"].values() if "experiment" in c}
    assert used == set(PAPER)  # every paper experiment fills a cell


def test_dev_tables_match_real_config_choices_and_carry_the_paper_numbers():
    methods = {p.stem for p in (CONFIGS / "method").glob("*.yaml")}
    for key in ("table1", "table2"):
        table = DEV_TABLES[key]
        assert table["metric"] in ("miou", "corloc")
        for row in table["rows"]:
            assert row["match"]["method"] in methods
            for group in ("loss", "graph", "optimizer"):
                if group in row["match"]:
                    assert (CONFIGS / group / f"{row['match'][group]}.yaml").exists()
            for column, cell in (row.get("cells") or {}).items():
                assert column in table["columns"] and isinstance(cell["paper"], float)
        # DeepCut's cells carry the same published numbers as the experiment tables
        published = {r["name"]: r for r in PAPER_NUMBERS[key]["rows"]}
        for name, ours in (("DeepCut N-cut", "DeepCut N-cut (paper recipe)"),
                           ("DeepCut CC", "DeepCut CC (centred, 16 restarts, lowest loss)")):
            row = next(r for r in table["rows"] if r["name"] == ours)
            for column, cell in published[name]["cells"].items():
                assert row["cells"][column]["paper"] == cell["paper"]


def test_the_configs_default_fills_one_dev_table_row():
    """A default DeepCut run (what `python run.py` does) lands in exactly one named row of each dev
    table, its "+ BS" twin: a new default without a row of its own would be left out of the tables."""
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        cfg = compose("config", overrides=["dataset=ecssd"], return_hydra_config=True)
    run = {"_choices": OmegaConf.to_container(cfg.hydra.runtime.choices), "_config": cfg}
    for key in ("table1", "table2"):
        rows = [name for name, match, _ in tables.dev_rows(DEV_TABLES[key]) if tables.matches(run, match)]
        assert rows == ["DeepCut N-cut (centred, K = 5, frame rule, 4 restarts, vote) + BS"]
        run_k2 = {**run, "_config": OmegaConf.merge(cfg, {"loss": {"k": 2}})}  # issue 16's first-round default
        rows = [name for name, match, _ in tables.dev_rows(DEV_TABLES[key]) if tables.matches(run_k2, match)]
        assert rows == ["DeepCut N-cut (centred, 4 restarts, vote) + BS"]


def test_paper_tables_default_recipe_is_the_configs_default():
    """experiments/paper_tables.sh spells the default out (so its row keeps its meaning later): the
    spelling must compose to exactly what `python run.py` runs today."""
    script = (ROOT / "experiments" / "paper_tables.sh").read_text()
    recipe = re.search(r"^recipe_default=\((.*?)\)", script, re.S | re.M).group(1).split()
    assert "loss.k=5" in recipe and "mode.background=frame" in recipe
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        spelt = compose("config", overrides=["method=deepcut", "loss=ncut", *recipe])
        default = compose("config")
    assert OmegaConf.to_container(spelt) == OmegaConf.to_container(default)


@pytest.mark.parametrize("table, count", [("paper_table1_*", 6), ("paper_table2_*", 6), ("paper_table3_*", 1),
                                          ("paper_table4_*", 6), ("paper_*", 19)])
def test_a_glob_selects_a_table(table, count):
    """What `python run.py -m 'experiment=glob(paper_table1_*)'` expands to (Hydra's own expansion)."""
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        override = OverridesParser.create().parse_override(f"experiment=glob({table})")
        override.config_loader = GlobalHydra.instance().config_loader()
        chosen = list(override.sweep_string_iterator())
        options = override.config_loader.get_group_options("experiment", results_filter=ObjectType.CONFIG)
    assert len(chosen) == count and set(chosen) <= set(options)


def test_launcher_configs_compose():
    assert compose_config(hydra=True).hydra.launcher._target_.endswith("JoblibLauncher")  # -m runs in parallel
    cfg = compose_config("launcher=joblib", "hydra.launcher.n_jobs=3", hydra=True)
    assert cfg.hydra.launcher._target_.endswith("JoblibLauncher") and cfg.hydra.launcher.n_jobs == 3
    assert compose_config("launcher=basic", hydra=True).hydra.launcher._target_.endswith("BasicLauncher")
    cfg = compose_config("launcher=submitit_local", hydra=True)
    assert cfg.hydra.launcher._target_.endswith("submitit_launcher.LocalLauncher")
    cfg = compose_config("launcher=slurm", "hydra.launcher.partition=gpu", "hydra.launcher.timeout_min=30", hydra=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher.partition, launcher.timeout_min, launcher.gpus_per_node) == ("gpu", 30, 1)
    for key in ("array_parallelism", "cpus_per_task", "mem_gb", "account", "qos", "setup", "additional_parameters"):
        assert key in launcher
    assert str(launcher.submitit_folder).endswith("/.submitit/%j")  # under the sweep dir
    for name in ("basic", "joblib", "submitit_local", "slurm"):  # the plugins import
        assert isinstance(get_object(compose_config(f"launcher={name}", hydra=True).hydra.launcher._target_), type)


@pytest.mark.skipif(importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper") is None,
                    reason="hydra-optuna-sweeper not installed (pip install -e '.[optuna]')")
def test_optuna_sweeper_config_composes():
    cfg = compose_config("sweeper=optuna", "experiment=paper_table1_voc07_ncut", hydra=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.direction == "maximize"
    assert set(sweeper.params) >= {"loss.k", "optimizer.lr", "optimizer.steps"}  # not graph.alpha: N-cut ignores it
    assert cfg.objective == "corloc"  # the experiment's metric wins over the sweeper's default
    get_object(sweeper._target_)


# ------------------------------------------------------------------ real sweeps (slow)

@pytest.mark.slow
def test_joblib_sweep_over_two_losses_and_its_table(tmp_path, photos):
    """`python run.py -m loss=ncut,cc`: the default launcher (joblib) runs the jobs in parallel processes."""
    sweep = tmp_path / "sweep"
    run("-m", "loss=ncut,cc", "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep}", *TINY, *photos, cwd=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep"]  # nothing in the working directory
    done = summaries(sweep)
    assert sorted(done) == ["0", "1"]
    for job in done:  # the joblib launcher ran them, one sub-directory per job
        hydra = OmegaConf.load(job_dirs(sweep)[job] / ".hydra" / "hydra.yaml").hydra
        assert hydra.runtime.choices["hydra/launcher"] == "joblib"
        assert (job_dirs(sweep)[job] / "run_info.json").exists()
    loss = {job: OmegaConf.load(job_dirs(sweep)[job] / ".hydra" / "config.yaml").loss.name for job in done}
    assert sorted(loss.values()) == ["cc", "ncut"]
    table = (sweep / "sweep.md").read_text()  # issue 27, item 15: the sweep ends with its comparison
    assert "| loss |" in table and "| cc |" in table and "| ncut |" in table

    assert tables.main([str(sweep), "--out", str(tmp_path / "tables")]) == 0
    out = tmp_path / "tables"
    assert not (out / "paper_tables.md").exists()  # no paper experiment in this sweep
    header = (out / "sweep.md").read_text().splitlines()[2]
    columns = [c.strip() for c in header.strip("|").split(" | ")]
    rows = markdown_rows(out / "sweep.md")
    assert len(rows) == 2 and columns[0] == "loss" and "method" in columns
    for row in rows:
        summary = next(s for job, s in done.items() if loss[job] == row[0])
        for metric, fmt in {"miou": ".4f", "acc": ".4f", "max_f_beta": ".4f"}.items():
            assert row[columns.index(metric)] == format(summary[metric], fmt)
        assert row[columns.index("s/img")] == format(summary["time_s"], ".3f")
        assert row[columns.index("images")] == "2" and row[columns.index("method")] == summary["method"]
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 2
    for _, r in runs.iterrows():  # full precision, equal to the summaries
        summary = done[Path(r["run_dir"]).name.split("_", 1)[0]]
        for key in ("miou", "acc", "max_f_beta", "time_s", "n_images"):
            assert r[key] == summary[key]
        assert r["commit"] == json.loads((Path(r["run_dir"]) / "run_info.json").read_text())["commit"]
    tex = (out / "sweep.tex").read_text()
    assert r"\begin{tabular}" in tex and tex.count(r" \\") >= 3


@pytest.mark.slow
def test_seed_sweep_of_a_paper_experiment_fills_its_cell_with_mean_and_std(tmp_path, photos):
    sweep = tmp_path / "sweep"
    run("-m", "experiment=paper_table2_ecssd_ncut", "seed=1,2", *TINY, *photos, *IN_TURN, f"hydra.sweep.dir={sweep}")
    done = summaries(sweep)
    assert len(done) == 2
    tables.main([str(sweep), "--out", str(tmp_path / "tables")])
    md = (tmp_path / "tables" / "paper_tables.md").read_text()
    values = [100 * s["miou"] for s in done.values()]
    mean, std = float(np.mean(values)), float(np.std(values, ddof=1))
    row = next(r for r in markdown_rows(tmp_path / "tables" / "paper_tables.md") if r[0] == "DeepCut N-cut")
    columns = PAPER_NUMBERS["table2"]["columns"]
    i = 1 + 3 * columns.index("ECSSD")
    assert row[i:i + 3] == ["74.6", f"{mean:.1f} ± {std:.1f}†", f"{round(mean, 1) - 74.6:+.1f}"]
    assert "† paper_table2_ecssd_ncut: run with backbone=tiny_random dataset=folder" in md  # not the paper's setting
    assert "### Runs" in md and "| 1,2 |" in md
    assert r"\multicolumn{3}{c}{ECSSD}" in (tmp_path / "tables" / "paper_tables.tex").read_text()


@pytest.mark.slow
def test_method_sweep_gives_a_side_by_side_table(tmp_path, photos):
    sweep = tmp_path / "sweep"
    run("-m", "method=deepcut,tokencut,lost,dsm,kmeans", *TINY, *photos, *IN_TURN, f"hydra.sweep.dir={sweep}")
    tables.main([str(sweep), "--out", str(tmp_path / "tables")])
    header = (tmp_path / "tables" / "sweep.md").read_text().splitlines()[2]
    columns = [c.strip() for c in header.strip("|").split(" | ")]
    rows = markdown_rows(tmp_path / "tables" / "sweep.md")
    methods = [r[columns.index("method")] for r in rows]
    assert sorted(methods) == sorted(s["method"] for s in summaries(sweep).values()) and len(set(methods)) == 5


@pytest.mark.slow
def test_submitit_local_launcher_runs_a_sweep(tmp_path, photos):
    sweep = tmp_path / "sweep"
    run("-m", "loss=ncut,cc", "launcher=submitit_local", "hydra.launcher.timeout_min=10", *TINY, *photos,
        f"hydra.sweep.dir={sweep}")
    done = summaries(sweep)
    assert sorted(done) == ["0", "1"] and all(s["n_images"] == 2 and s["complete"] for s in done.values())
    logs = list((sweep / ".submitit").glob("*/*_log.out"))
    assert len(logs) == 2  # each job ran as its own submitit job


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper") is None,
                    reason="hydra-optuna-sweeper not installed (pip install -e '.[optuna]')")
def test_optuna_search_optimises_the_objective_run_py_returns(tmp_path, photos):
    sweep = tmp_path / "sweep"
    run("-m", "sweeper=optuna", "hydra.sweeper.n_trials=2", *TINY, *photos, *IN_TURN, f"hydra.sweep.dir={sweep}")
    done = summaries(sweep)
    assert len(done) == 2
    result = OmegaConf.load(sweep / "optimization_results.yaml")
    assert math.isclose(result.best_value, max(s["miou"] for s in done.values()))
    assert set(result.best_params) == {"loss.k", "optimizer.lr", "optimizer.steps"}


# ------------------------------------------------------------------ one data set split across jobs


def test_slurm_split_command_composes_and_validates_as_written(tmp_path):
    """`python run.py -m launcher=slurm dataset=duts_te dataset.num_shards=8 'dataset.shard=range(8)'`:
    Hydra expands it into 8 jobs, each composes with one GPU, validates, and the 8 data sets built
    from those configs partition DUTS-TE (a miniature copy here)."""
    from deepcut.validate import validate

    root = tmp_path / "DUTS-TE"
    for i in range(20):
        Image.new("RGB", (8, 8)).save((root / "DUTS-TE-Image").mkdir(parents=True, exist_ok=True) or
                                      root / "DUTS-TE-Image" / f"ILSVRC_{i:03d}.jpg")
        Image.new("L", (8, 8)).save((root / "DUTS-TE-Mask").mkdir(parents=True, exist_ok=True) or
                                    root / "DUTS-TE-Mask" / f"ILSVRC_{i:03d}.png")
    command = ["launcher=slurm", "dataset=duts_te", "dataset.num_shards=8", "dataset.shard=range(8)"]
    parsed = OverridesParser.create().parse_overrides(command)
    shards = next(o for o in parsed if o.key_or_group == "dataset.shard")
    jobs = [int(v) for v in shards.sweep_iterator()]
    assert jobs == list(range(8))
    ids = []
    for shard in jobs:
        cfg = compose_config(*command[:3], f"dataset.shard={shard}", f"dataset.root={root}", hydra=True)
        assert cfg.hydra.launcher._target_.endswith("SlurmLauncher") and cfg.hydra.launcher.gpus_per_node == 1
        assert (cfg.dataset.shard, cfg.dataset.num_shards) == (shard, 8)
        validate(cfg)
        ids += instantiate(cfg.dataset).ids
    assert sorted(ids) == [f"ILSVRC_{i:03d}" for i in range(20)]


@pytest.fixture(scope="module")
def nine_photos(tmp_path_factory):
    """Nine small real photos with box masks: enough images for three shards."""
    import skimage.data
    root = tmp_path_factory.mktemp("nine")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    names = ["astronaut", "chelsea", "coffee", "rocket", "camera", "cat", "immunohistochemistry", "hubble_deep_field",
             "motorcycle_left"]
    for i, name in enumerate(names):
        image = np.asarray(getattr(skimage.data, name)() if hasattr(skimage.data, name) else skimage.data.astronaut())
        if image.ndim == 3 and image.shape[2] == 4:
            image = image[..., :3]
        Image.fromarray(image).resize((80, 64)).save(root / "images" / f"p{i}.png")
        mask = np.zeros((64, 80), np.uint8)
        mask[8 + i:48, 12:60 - i] = 255
        Image.fromarray(mask).save(root / "masks" / f"p{i}.png")
    return ["dataset=folder", f"dataset.root={root}"]


@pytest.mark.slow
def test_a_split_run_merges_to_exactly_the_unsharded_summary(tmp_path, nine_photos):
    """3 shards (each its own run dir) merged by tables.py and by evaluate.py give the summary
    of the unsharded run, number for number."""
    whole, split = tmp_path / "whole", tmp_path / "split"
    run(*TINY, *nine_photos, f"hydra.run.dir={whole}")
    run("-m", *TINY, *nine_photos, *IN_TURN, "dataset.num_shards=3", "dataset.shard=range(3)",
        f"hydra.sweep.dir={split}")
    expected = json.loads((whole / "summary.json").read_text())
    shards = summaries(split)
    assert sorted(shards) == ["0", "1", "2"] and sum(s["n_images"] for s in shards.values()) == 9
    assert all(0 < s["n_images"] < 9 for s in shards.values())
    keys = ["miou", "acc", "max_f_beta", "mae", "s_measure", "mean_e_measure", "max_e_measure", "n_images",
            "n_evaluated", "n_failed", "n_degenerate"]

    merged = tables.find_runs([split])[0]
    assert len(merged) == 1  # one run over the whole data set, not three
    row = merged.iloc[0]
    assert {k: row[k] for k in keys} == {k: expected[k] for k in keys}
    assert "dataset.shard" not in row["variant"] and "(3 shards)" in row["run_dir"]

    spec = importlib.util.spec_from_file_location("evaluate", ROOT / "evaluate.py")
    evaluate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(evaluate)
    merged_eval = evaluate.main([str(job_dirs(split)[str(i)]) for i in range(3)])
    assert {k: merged_eval[k] for k in keys} == {k: expected[k] for k in keys}
    assert (split / "merged_evaluation.json").exists()
    with pytest.raises(SystemExit):  # two of three shards are not the whole data set
        evaluate.main([str(job_dirs(split)["0"]), str(job_dirs(split)["1"])])
    with pytest.raises(SystemExit):  # a shard given twice is not a split (issue 27: it merged as 3 shards)
        evaluate.main([str(job_dirs(split)["0"]), str(job_dirs(split)["1"]), str(job_dirs(split)["1"])])


@pytest.mark.slow
@pytest.mark.parametrize("other_data", ["other photos", "one photo swapped"])
def test_evaluate_refuses_to_merge_shards_run_on_different_data(tmp_path, nine_photos, capsys, other_data):
    """Shard 1 of the same split, run with the same settings on another folder (other photos, or a
    copy with one of shard 1's photos replaced), must not merge with shards 0 and 2 of the first
    folder into one summary (issue 27: it did, with rc 0)."""
    split = tmp_path / "split"
    run("-m", *TINY, *nine_photos, *IN_TURN, "dataset.num_shards=3", "dataset.shard=range(3)",
        f"hydra.sweep.dir={split}")
    root = Path(nine_photos[1].split("=", 1)[1])
    other = tmp_path / "other"
    shutil.copytree(root, other)
    shard1 = sorted(json.loads((job_dirs(split)["1"] / "dataset.json").read_text())["images"])
    if other_data == "other photos":
        for f in (other / "images").glob("*.png"):
            f.rename(f.with_name("x" + f.name))
        for f in (other / "masks").glob("*.png"):
            f.rename(f.with_name("x" + f.name))
    else:
        Image.fromarray(np.full((64, 80, 3), 90, np.uint8)).save(other / "images" / f"{shard1[0]}.png")
    run(*TINY, "dataset=folder", f"dataset.root={other}", "dataset.num_shards=3", "dataset.shard=1",
        f"hydra.run.dir={tmp_path / 'shard1_other'}")
    spec = importlib.util.spec_from_file_location("evaluate", ROOT / "evaluate.py")
    evaluate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(evaluate)
    with pytest.raises(SystemExit) as exit_:
        evaluate.main([str(job_dirs(split)["0"]), str(tmp_path / "shard1_other"), str(job_dirs(split)["2"])])
    assert exit_.value.code == 2
    error = capsys.readouterr().err
    assert "shard1_other" in error and "only the shards of one run on one data set can be merged" in error
    assert not (tmp_path / "merged_evaluation.json").exists()


def _fake_run(path: Path, choices: dict, bilateral: bool, seed: int, summary: dict, config: dict | None = None) -> None:
    """A finished run directory as run.py leaves it (only what tables.py reads); `config`: more
    of its composed config (nested keys)."""
    (path / ".hydra").mkdir(parents=True)
    composed = OmegaConf.merge({"seed": seed, "method": {"name": choices["method"]}, "postprocess": {"bilateral": bilateral}},
                               config or {})
    OmegaConf.save(composed, path / ".hydra" / "config.yaml")
    OmegaConf.save(OmegaConf.create({"hydra": {"runtime": {"choices": choices}}}), path / ".hydra" / "hydra.yaml")
    overrides = [f"{k}={v}" for k, v in choices.items()] + [f"seed={seed}", f"postprocess.bilateral={bilateral}"]
    OmegaConf.save(OmegaConf.create(overrides), path / ".hydra" / "overrides.yaml")
    (path / "summary.json").write_text(json.dumps({"n_images": 5, "n_failed": 0, "time_s": 0.1, "complete": True,
                                                   "backbone": "vit_small_patch14_dinov2", **summary}))


def test_dev_tables_put_paper_ours_and_difference_in_each_cell(tmp_path):
    deepcut = {"method": "deepcut", "loss": "ncut", "graph": "default", "optimizer": "default"}
    recipe16 = {"backbone": {"center": True}, "optimizer": {"restarts": 16, "steps": 10}, "loss": {"k": 2}}
    for seed, miou in enumerate([0.50, 0.52, 0.54]):
        _fake_run(tmp_path / f"d{seed}", deepcut, False, seed, {"dataset": "ecssd", "miou": miou}, recipe16)
    _fake_run(tmp_path / "d_bs", deepcut, True, 0, {"dataset": "ecssd", "miou": 0.61}, recipe16)
    # Another recipe under the same config choices (the default changed): not pooled into the named row.
    _fake_run(tmp_path / "d8", deepcut, False, 0, {"dataset": "ecssd", "miou": 0.10},
              {"backbone": {"center": True}, "optimizer": {"restarts": 8, "steps": 10}, "loss": {"k": 2}})
    _fake_run(tmp_path / "t_bs", {"method": "tokencut"}, True, 0, {"dataset": "ecssd", "miou": 0.70})
    _fake_run(tmp_path / "t_voc", {"method": "tokencut"}, False, 0, {"dataset": "voc07", "corloc": 60.0})
    result = tables.make_tables([tmp_path], tmp_path / "tables")
    md = result["files"]["dev_md"].read_text()
    table2 = md.split("### Table 2: foreground segmentation")[1].split("###")[0]
    rows = {r[0]: r for r in markdown_rows_of(table2)}
    columns = list(DEV_TABLES["table2"]["columns"])
    e = 1 + 3 * columns.index("ECSSD")
    assert rows["DeepCut N-cut (centred, 16 restarts, vote)"][e:e + 3] == ["74.6", "52.0 ± 2.0", "-22.6"]
    assert rows["DeepCut N-cut (centred, 16 restarts, vote) + BS"][e:e + 3] == ["–", "61.0", "–"]  # no published + BS row
    assert "DeepCut N-cut (paper recipe)" in rows and "DeepCut N-cut (paper recipe) + BS" not in rows  # no + BS run
    assert rows["TokenCut + BS"][e:e + 3] == ["77.2", "70.0", "-7.2"]
    assert rows["TokenCut"][e:e + 3] == ["71.2", "–", "–"]
    table1 = md.split("### Table 1")[1].split("###")[0]
    v = 1 + 3 * list(DEV_TABLES["table1"]["columns"]).index("VOC07")
    assert {r[0]: r for r in markdown_rows_of(table1)}["TokenCut"][v:v + 3] == ["68.8", "60.0", "-8.8"]
    assert "ECSSD 5" in table2 and "NOT comparable" in table2


def test_a_dev_table_cell_pools_seeds_of_one_recipe_only(tmp_path):
    """A row names a few keys, so runs on other features or other images match it too: the cell keeps
    the recipe with the most images (then seeds), never averages the others in, and names them."""
    lost = {"method": "lost"}
    for seed, miou in enumerate([0.40, 0.42]):  # seeds of one recipe on all 1671 images: pooled
        _fake_run(tmp_path / f"full{seed}", lost, True, seed, {"dataset": "duts_te", "miou": miou, "n_images": 1671})
    _fake_run(tmp_path / "shard", lost, True, 0, {"dataset": "duts_te", "miou": 0.90, "n_images": 99})
    _fake_run(tmp_path / "token", lost, True, 0, {"dataset": "duts_te", "miou": 0.10, "n_images": 1671},
              {"backbone": {"facet": "token"}})
    result = tables.make_tables([tmp_path], tmp_path / "tables")
    table2 = result["files"]["dev_md"].read_text().split("### Table 2: foreground segmentation")[1].split("###")[0]
    d = 1 + 3 * list(DEV_TABLES["table2"]["columns"]).index("DUTS-TE")
    assert {r[0]: r for r in markdown_rows_of(table2)}["LOST + BS"][d:d + 3] == ["57.2", "41.0 ± 1.4", "-16.2"]
    assert "LOST + BS, DUTS-TE: 1 run(s) left out, a different recipe (99 images)" in table2
    assert "LOST + BS, DUTS-TE: 1 run(s) left out, a different recipe (1671 images; backbone.facet=token)" in table2


def markdown_rows_of(text: str) -> list[list[str]]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|---"))
    return [[c.strip() for c in line.strip("|").split(" | ")] for line in lines[start + 1:] if line.startswith("|")]
