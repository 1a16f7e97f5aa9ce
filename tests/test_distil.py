"""Self-training (issue 29): a head learns a known direction, its checkpoint is tied to its features,
and task=distil trains it from the teacher's masks without reading ground truth."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from deepcut import distil
from deepcut.config import compose_config
from deepcut.errors import ConfigError
from helpers import REPO, env, good_dataset


def separable(n_images=12, n=64, dim=16, seed=0, w=None):
    """Features whose foreground is the side of a known direction w (targets = f . w > 0)."""
    g = torch.Generator().manual_seed(seed)
    w = torch.nn.functional.normalize(torch.randn(dim, generator=g), dim=0) if w is None else w
    feats = [torch.randn(n, dim, generator=g) for _ in range(n_images)]
    return w, feats, [(f @ w > 0).float() for f in feats]


def test_a_linear_head_recovers_the_separating_direction():
    w, feats, targets = separable()
    head, losses = distil.fit(feats, targets, epochs=60, lr=1e-2, batch_patches=128, weight_decay=0.0)
    learned = head.net.weight.detach()[0]
    assert torch.nn.functional.cosine_similarity(learned, w, dim=0) > 0.95
    assert losses[-1] < losses[0] / 2
    _, test, truth = separable(seed=1, w=w)
    with torch.no_grad():
        accuracy = np.mean([float(((head(f) > 0).float() == t).float().mean()) for f, t in zip(test, truth)])
    assert accuracy > 0.95  # on features it has never seen
    mlp, _ = distil.fit(feats, targets, kind="mlp", hidden=32, epochs=40, lr=1e-2, batch_patches=128)
    with torch.no_grad():
        assert np.mean([float(((mlp(f) > 0).float() == t).float().mean()) for f, t in zip(test, truth)]) > 0.9


def test_fit_is_deterministic_for_a_seed():
    _, feats, targets = separable()
    a, _ = distil.fit(feats, targets, epochs=2, seed=3)
    b, _ = distil.fit(feats, targets, epochs=2, seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_grid_target_is_each_patch_cells_covered_share():
    mask = np.zeros((4, 6), bool)
    mask[:2, :3] = True       # the top-left patch of a 2 x 2 grid, whole
    mask[2, 3] = True         # a sixth of the bottom-right one
    assert torch.allclose(distil.grid_target(mask, (2, 2)), torch.tensor([1.0, 0.0, 0.0, 1 / 6]))


def test_a_checkpoint_for_other_features_or_no_head_is_refused(tmp_path):
    backbone = compose_config(backbone="tiny_random").backbone
    _, feats, targets = separable(dim=8)
    head, _ = distil.fit(feats, targets, epochs=1)
    distil.save(tmp_path / "head.pt", head, backbone, {})
    assert torch.equal(distil.load(tmp_path / "head.pt", backbone).net.weight, head.net.weight)
    other = OmegaConf.merge(backbone, {"resolution": 128})
    with pytest.raises(ConfigError, match=r"trained on features with backbone.resolution=64, this run's is 128"):
        distil.load(tmp_path / "head.pt", other)
    with pytest.raises(ConfigError, match="backbone.center"):
        distil.load(tmp_path / "head.pt", OmegaConf.merge(backbone, {"center": not backbone.center}))
    with pytest.raises(ConfigError, match="no such file"):
        distil.load(tmp_path / "nope.pt", backbone)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="is not a head written by task=distil"):
        distil.load(tmp_path / "junk.pt", backbone)
    with pytest.raises(ConfigError, match="task.head='cnn'"):
        distil.Head(8, "cnn")


def test_the_token_head_recipe_gives_both_of_its_runs_the_same_features(tmp_path):
    """experiment=head_token: the distil run and the method=head run read the last block's uncentred
    tokens, so its head loads there and is refused by a run on the default's centred keys."""
    trained = compose_config(overrides=["task=distil", "experiment=head_token"])
    used = compose_config("head", overrides=["experiment=head_token", f"method.checkpoint={tmp_path / 'head.pt'}"])
    assert (trained.backbone.facet, trained.backbone.center, trained.task.name) == ("token", False, "distil")
    assert distil.feature_settings(used.backbone) == distil.feature_settings(trained.backbone)
    assert used.postprocess.bilateral_params.max_side == 256  # the speed the recipe was measured at
    _, feats, targets = separable(dim=8)
    distil.save(tmp_path / "head.pt", distil.fit(feats, targets, epochs=1)[0], trained.backbone, {})
    distil.load(tmp_path / "head.pt", used.backbone)
    with pytest.raises(ConfigError, match="backbone.facet='token', this run's is 'key'"):
        distil.load(tmp_path / "head.pt", compose_config("head").backbone)


@pytest.mark.slow
def test_distil_trains_a_head_without_reading_ground_truth_and_the_head_segments(tmp_path):
    """run.py task=distil on images whose masks are unreadable (a run that read them would fail those
    images): head.pt is written; method=head segments and is scored like any method; a head for
    another backbone setting is refused with one paragraph; task.teacher_dir retrains on its masks."""
    data = good_dataset(tmp_path / "data", 6)
    (data / "images" / "broken.png").unlink()
    (data / "masks" / "broken.png").unlink()
    for m in (data / "masks").iterdir():
        m.write_bytes(b"not a png")

    def run(out, *extra, code=0):
        cmd = [sys.executable, "run.py", f"hydra.run.dir={out}", "backbone=tiny_random", "dataset=folder",
               f"dataset.root={data}", *extra]
        done = subprocess.run(cmd, cwd=REPO, env=env(tmp_path / "cache"), capture_output=True, text=True, timeout=300)
        assert done.returncode == code, done.stderr[-2000:]
        return done

    run(tmp_path / "teacher", "task=distil", "task.epochs=3")
    summary = json.loads((tmp_path / "teacher" / "summary.json").read_text())
    assert summary["n_failed"] == 0 and summary["n_evaluated"] == 0 and 0 <= summary["head_agreement"] <= 1
    head = tmp_path / "teacher" / "head.pt"
    assert head.exists() and len(list((tmp_path / "teacher" / "labels").glob("*.png"))) == 6

    for m in (data / "masks").iterdir():  # readable masks now: the head is scored like a method
        m.unlink()
    good_dataset(tmp_path / "data", 6)
    (data / "images" / "broken.png").unlink()
    run(tmp_path / "student", "method=head", f"method.checkpoint={head}")
    scored = json.loads((tmp_path / "student" / "summary.json").read_text())
    assert scored["method"] == "head" and scored["n_evaluated"] == 6 and 0 <= scored["miou"] <= 1
    refused = run(tmp_path / "other", "method=head", f"method.checkpoint={head}", "backbone.resolution=128", code=2)
    said = refused.stdout + refused.stderr
    assert "backbone.resolution=64, this run's is 128" in said and "Traceback" not in said
    run(tmp_path / "again", "task=distil", "task.epochs=3", "task.head=mlp", f"task.teacher_dir={tmp_path / 'teacher'}")
    again = json.loads((tmp_path / "again" / "summary.json").read_text())
    assert again["teacher_dir"] == str(tmp_path / "teacher") and (tmp_path / "again" / "head.pt").exists()
    # it segmented nothing, so it leaves no empty results.csv, labels/ or overlays/ that would look like a run
    assert not any((tmp_path / "again" / name).exists() for name in ("results.csv", "labels", "overlays"))
    # The API builds the same method, and evaluate.py scores the distil run's masks against the
    # ground truth it never read (its dataset.json fingerprints the images only).
    import deepcut
    from PIL import Image
    seg = deepcut.create_segmenter("head", backbone="tiny_random", overrides=[f"method.checkpoint={head}"], device="cpu")
    assert seg(Image.open(next((data / "images").iterdir()))).mask.dtype == torch.bool
    scored = subprocess.run([sys.executable, "evaluate.py", str(tmp_path / "teacher")], cwd=REPO, env=env(tmp_path / "cache"),
                            capture_output=True, text=True, timeout=300)
    assert scored.returncode == 0, scored.stderr[-2000:]
    assert json.loads((tmp_path / "teacher" / "evaluation.json").read_text())["n_evaluated"] == 6
