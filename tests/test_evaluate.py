"""Tests of evaluate.py: a run directory's labels scored again, and its errors."""
import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from deepcut.rundir import RunDir
from helpers import config, folder_config


@pytest.fixture
def scored_run(two_datasets, tmp_path):
    """A run directory as run.py leaves it (labels, .hydra/config.yaml, dataset.json) for data A."""
    from hydra.utils import instantiate
    a, b, _ = two_datasets
    out = tmp_path / "run"
    cfg = folder_config(a)
    dataset = instantiate(cfg.dataset)
    RunDir.open(out, cfg, dataset, [], OmegaConf.create({"overrides": {"task": []}})).close()
    (out / "labels").mkdir()
    for i, sid in enumerate(dataset.ids):
        if sid == "broken":  # an empty file: run.py writes no labels for it
            continue
        image = dataset[i].image
        Image.fromarray(np.ones((image.height, image.width), np.uint8)).save(out / "labels" / f"{sid}.png")
    return out, a, b


def evaluate_main(*argv):
    import evaluate
    return evaluate.main([str(a) for a in argv])


def test_evaluate_scores_and_reports_a_damaged_label_map_as_its_row(scored_run):
    out, _, _ = scored_run
    (out / "labels" / "img01.png").write_bytes(b"\x89PNG damaged")
    summary = evaluate_main(out)
    assert summary["n_images"] == 4 and summary["n_failed"] == 2 and summary["n_evaluated"] == 2  # + broken.png
    assert "not a readable label map" in (out / "evaluation.csv").read_text()


@pytest.mark.parametrize("case, message", [
    ("moved", "expected the folder"),
    ("empty", "is empty"),
    ("no_hydra", "no .hydra/config.yaml"),
    ("other_data", "not the files the run's labels were computed on"),
])
def test_evaluate_errors_are_one_paragraph_exit_2(scored_run, capsys, case, message):
    out, a, b = scored_run
    argv = [out]
    if case == "moved":
        a.rename(a.with_name("elsewhere"))
    elif case == "empty":
        (out / ".hydra" / "config.yaml").write_text("")
    elif case == "no_hydra":
        import shutil
        shutil.rmtree(out / ".hydra")
    else:
        argv.append(f"dataset.root={b}")
    with pytest.raises(SystemExit) as err:
        evaluate_main(*argv)
    text = capsys.readouterr().err
    assert err.value.code == 2 and message in text and "Traceback" not in text and len(text.strip().splitlines()) == 1


def test_evaluate_without_hydra_needs_the_data_set_and_types_overrides(scored_run):
    import shutil

    import evaluate
    out, a, _ = scored_run
    shutil.rmtree(out / ".hydra")
    summary = evaluate_main(out, "backbone=tiny_random", "dataset=folder", f"dataset.root={a}", "dataset.limit=2")
    assert summary["n_images"] == 2 and summary["n_failed"] == 1  # broken.png and img00
    (out / ".hydra").mkdir()
    OmegaConf.save(folder_config(a), out / ".hydra" / "config.yaml")
    cfg = evaluate.run_config(out, ["dataset.limit=8", "dataset.root=null"])  # typed as Hydra types them
    assert cfg.dataset.limit == 8 and cfg.dataset.root is None


def test_the_labels_folder_itself_scores_its_run_and_an_unfinished_run_is_noted(scored_run, capsys):
    """Issue 27, item 11: `evaluate.py RUN/labels` looked for RUN/labels/labels/ and reported every
    image failed with rc 0; an unfinished run scored without a word."""
    import json
    out, _, _ = scored_run
    (out / "results.csv").write_text("id\n")
    assert evaluate_main(out / "labels")["n_evaluated"] == evaluate_main(out)["n_evaluated"] == 3
    assert "unfinished" not in capsys.readouterr().err
    (out / "summary.json").write_text(json.dumps({"complete": False, "n_images": 2}))
    evaluate_main(out)
    assert "holds an unfinished run (2 images done)" in capsys.readouterr().err


def test_a_run_on_the_photos_alone_is_scored_later_against_their_masks(two_datasets, tmp_path):
    """Issue 27, item 11: a run on a folder of photos (no masks) was refused by evaluate.py against
    the same photos with their masks, as if they were other images; other photos still are."""
    from hydra.utils import instantiate
    a, b, _ = two_datasets
    out = tmp_path / "photos_only"
    cfg = config("dataset=folder", f"dataset.path={a / 'images'}")
    dataset = instantiate(cfg.dataset)
    assert all(e.mask is None for e in dataset.entries)
    RunDir.open(out, cfg, dataset, [], OmegaConf.create({"overrides": {"task": []}})).close()
    (out / "labels").mkdir()
    for i, sid in enumerate(dataset.ids):
        if sid != "broken":
            image = dataset[i].image
            Image.fromarray(np.ones((image.height, image.width), np.uint8)).save(out / "labels" / f"{sid}.png")
    summary = evaluate_main(out, "dataset=folder", f"dataset.root={a}")
    assert summary["n_evaluated"] == 3 and 0 < summary["miou"] < 1
    with pytest.raises(SystemExit):  # B: the same names, other photos
        evaluate_main(out, "dataset=folder", f"dataset.root={b}")
