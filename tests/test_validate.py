"""Tests of deepcut/validate.py: every bad setting is named, in one paragraph, before a run starts."""
import subprocess
import sys

import pytest
import torch

from deepcut.errors import ConfigError, one_paragraph
from deepcut.validate import validate
from helpers import REPO, config


@pytest.mark.parametrize("overrides, setting", [
    (["backbone.name=vit_nonexistent_patch8"], "backbone.name='vit_nonexistent_patch8'"),
    (["backbone.stride=3"], "backbone.stride=3"),
    (["backbone.layer=5"], "backbone.layer=5"),
    (["backbone.layer=[-1,-1]"], "backbone.layer=[-1, -1]"),   # a list of blocks: each once
    (["backbone.layer=[0,9]"], "backbone.layer=[0, 9]"),       # tiny_random has 2 blocks
    (["mode.collection_graph=dense"], "mode.collection_graph='dense'"),
    (["mode.collection_graph=joint"], "mode.collection_graph=joint with mode.cross_knn=0"),
    (["mode.merge_to=2"], "mode.merge_to=2 with mode=single"),
    (["mode=parts", "loss.k=4", "mode.merge_to=4"], "mode.merge_to=4 with loss.k=4"),
    (["method=coseg", "method.thresh=2"], "method.thresh=2"),
    (["backbone.resolution=4"], "backbone.resolution=4"),
    (["+backbone.model_kwargs.nonsense=1"], "backbone.model_kwargs"),
    (["backbone.name=resnet18"], "backbone.name='resnet18' is not a ViT"),  # issue 27, item 10: not model_kwargs
    (["loss.k=1"], "loss.k=1"),
    (["loss=cc", "graph.alpha=0"], "graph.alpha=0"),
    (["optimizer.steps=0"], "optimizer.steps=0"),
    (["optimizer.lr=-0.001"], "optimizer.lr=-0.001"),
    (["mode=parts", "loss.k=1"], "loss.k=1"),
    (["method=kmeans", "method.k=1"], "method.k=1"),
    (["backbone.weights=/no/such/checkpoint.pth"], "backbone.weights='/no/such/checkpoint.pth'"),
    (["num_workers=-1"], "num_workers=-1"),
])
def test_validation_names_the_setting(overrides, setting):
    with pytest.raises(ConfigError) as err:
        validate(config(*overrides))
    assert setting in str(err.value)
    assert "\n" not in str(err.value)  # one paragraph


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as err:
        validate(config("backbone.batch_size=0", "loss.k=1", "optimizer.lr=0"))
    assert len(one_paragraph(err.value).splitlines()) == 3


def test_a_wrong_value_is_answered_without_importing_timm():
    # issue 27, item 14: timm takes 3 s to import; only the architecture's checks need it, and they
    # run once every other setting passed (a wrong stride is still named, by the second step).
    code = ("import sys; from hydra import compose, initialize_config_dir; from deepcut.config import CONFIGS; "
            "from deepcut.errors import ConfigError; from deepcut.validate import validate\n"
            "with initialize_config_dir(str(CONFIGS), version_base='1.3'):\n"
            "    cfg = compose('config', overrides=['postprocess.upsample=cubic', 'backbone.stride=3'])\n"
            "try:\n    validate(cfg)\n"
            "except ConfigError as e:\n    assert 'postprocess.upsample' in str(e) and 'stride' not in str(e), e\n"
            "assert 'timm' not in sys.modules, 'timm imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
    with pytest.raises(ConfigError, match="backbone.stride=3: .* has 8px patches"):
        validate(config("backbone.stride=3"))


def test_validation_passes_every_shipped_backbone_and_method():
    for group in ("backbone", "method", "loss", "mode"):
        for option in sorted((REPO / "configs" / group).glob("*.yaml")):
            cfg = config(f"{group}={option.stem}")
            weights = str(cfg.backbone.weights)
            if weights.endswith((".pth", ".pt", ".safetensors")):
                # A backbone shipped as a local checkpoint (MoCo-v3) is valid once its file exists;
                # without it, validation names the file and the allowed values.
                with pytest.raises(ConfigError, match="no such file.*use hub, random, offline"):
                    validate(cfg)
                continue
            if option.stem == "head":  # a trained head's method: valid once given its checkpoint
                with pytest.raises(ConfigError, match="method.checkpoint=null: give the head.pt of a distil run"):
                    validate(cfg)
                continue
            validate(cfg)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_gpu_is_a_setting_error():
    with pytest.raises(ConfigError, match="device='cuda'"):
        validate(config("device=cuda"))


@pytest.mark.parametrize("overrides, setting", [
    (["backbone.resolution=9"], "backbone.resolution=9"),   # tiny_random: 8 px patches, stride 8: one patch
    (["graph.knn=-1"], "graph.knn=-1"),
    (["graph.power=-1"], "graph.power=-1"),
    (["loss.ortho_weight=nan"], "loss.ortho_weight=nan"),
    (["seed=abc"], "seed='abc'"),
    (["objective=bogus"], "objective='bogus'"),
    (["dataset.limit=abc"], "dataset.limit='abc'"),
])
def test_validation_round_two(overrides, setting):
    with pytest.raises(ConfigError) as err:
        validate(config(*overrides))
    assert setting in str(err.value) and "\n" not in str(err.value)


def test_an_objective_the_data_set_cannot_give_is_refused_before_any_work(tmp_path):
    """Issue 27, item 7: `-m sweeper=optuna` on the bundled photos (no ground truth) ran every trial,
    then failed in a raw traceback on the missing value."""
    from deepcut.datasets import Demo, Folder
    from deepcut.validate import objective_problem
    from helpers import good_dataset
    assert "objective=miou: needs masks as ground truth, and demo has none" in objective_problem(config("objective=miou"), Demo())
    assert "needs boxes" in objective_problem(config("objective=corloc"), Demo())
    assert objective_problem(config("objective=time_s"), Demo()) is None
    labelled = Folder(root=good_dataset(tmp_path / "data", 2))
    assert objective_problem(config("objective=miou"), labelled) is None
    assert "needs masks" in objective_problem(config("objective=miou"), labelled.without_ground_truth())
