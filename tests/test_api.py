"""The public API: create_segmenter's defaults are run.py's, and the README's snippet reproduces
`python run.py` exactly on the demo photos."""
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import deepcut
from deepcut.results import read_rows
from deepcut.seeds import derive_seed
from deepcut.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def readme_snippet() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.real
@pytest.mark.slow
def test_readme_snippet_gives_what_run_py_gives(tmp_path):
    out_dir = tmp_path / "run"
    subprocess.run([sys.executable, "run.py", f"hydra.run.dir={out_dir}", f"cache.dir={tmp_path / 'cache'}"],
                   cwd=ROOT, check=True, capture_output=True)
    scope: dict = {}
    exec(readme_snippet(), scope)  # noqa: S102 - the README's own code, as a user runs it
    outs, demo = scope["outs"], scope["demo"]
    rows = {r["id"]: r for r in read_rows(out_dir / "results.csv")}
    assert len(outs) == len(demo.ids) == len(rows) == 5
    for sid, out in zip(demo.ids, outs):
        saved = np.asarray(Image.open(out_dir / "labels" / f"{sid}.png")).astype(np.int64)
        assert np.array_equal(out.labels.numpy(), saved), sid
        assert out.box is not None and out.box.tolist() == [rows[sid][k] for k in ("x0", "y0", "x1", "y1")], sid
        h, w = out.grid
        assert out.patch_labels.shape == (h, w) and out.features.shape[0] == h * w
        # The soft assignment: a distribution over the labels, whose argmax agrees with the labels
        # on most patches (the labels are the majority of 4 restarts, a 2-2 tie is background; the
        # soft channel is their mean probability, so the two differ on split patches).
        assert out.soft.shape[1:] == (h, w) and torch.allclose(out.soft.sum(0), torch.ones(h, w), atol=1e-5)
        assert (out.soft.argmax(0) == out.patch_labels).float().mean() > 0.8, sid
    assert scope["out"] is outs[1] and demo.ids[1] == "chelsea"


def test_defaults_are_the_configs():
    seg = deepcut.create_segmenter(backbone="tiny_random", device="cpu")
    cfg = seg.config
    assert seg.extractor.resolution == cfg.backbone.resolution
    method = seg.method
    assert method.optimisation.restarts == cfg.optimizer.restarts and method.optimisation.combine == cfg.optimizer.combine
    assert seg.extractor.center == cfg.backbone.center is True
    assert method.k == cfg.loss.k and method.loss == cfg.loss.name


def test_choices_and_overrides_reach_the_method():
    seg = deepcut.create_segmenter("deepcut", backbone="tiny_random", loss="cc", mode="parts",
                                   overrides=["loss.k=4", "optimizer.restarts=2"], device="cpu", seed=3)
    assert (seg.method.loss, seg.method.mode, seg.method.k, seg.method.optimisation.restarts) == ("cc", "parts", 4, 2)
    assert seg.seed == 3


def test_bad_settings_are_config_errors():
    with pytest.raises(ConfigError, match="not a config group"):
        deepcut.create_segmenter(backbon="tiny_random")
    with pytest.raises(ConfigError, match="loss.k"):
        deepcut.create_segmenter(backbone="tiny_random", overrides=["loss.k=1"])


@pytest.mark.parametrize("kwargs, message", [
    ({"method": "nope"}, r"method='nope': not an option of configs/method/; use one of coseg, deepcut, "),
    ({"loss": "nope"}, r"loss='nope': not an option of configs/loss/; use one of cc, ncut"),
    ({"overrides": ["loss.kk=3"]}, r"loss.kk: not a setting of the configs; the keys there are name, k, ortho_weight"),
    ({"overrides": "loss.k=3"}, r"overrides='loss.k=3': give a list of 'group.key=value' strings"),
    ({"overrides": ["loss.k3"]}, r"overrides=\['loss.k3'\]: Error parsing override 'loss.k3'"),
])
def test_unknown_options_keys_and_overrides_are_config_errors_exported_from_deepcut(kwargs, message):
    """Issue 27, item 9: Hydra's MissingConfigException (with its search-path dump),
    ConfigCompositionException and a string parsed letter by letter become one ConfigError."""
    assert deepcut.ConfigError is ConfigError
    with pytest.raises(deepcut.ConfigError, match=message):
        deepcut.create_segmenter(**{"backbone": "tiny_random", **kwargs})


def test_arrays_tensors_and_paths_are_images_and_empty_ones_are_refused(tmp_path):
    """Issue 27, item 9: what users pass besides PIL images gives the PIL image's result."""
    seg = deepcut.create_segmenter("kmeans", backbone="tiny_random", device="cpu")
    a = np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    reference = seg(Image.fromarray(a), ids="x").labels
    Image.fromarray(a).save(tmp_path / "photo.png")
    for same in (a, a / 255.0, torch.from_numpy(a).permute(2, 0, 1), torch.from_numpy(a).permute(2, 0, 1) / 255,
                 str(tmp_path / "photo.png"), tmp_path / "photo.png"):
        assert torch.equal(seg(same, ids="x").labels, reference), type(same)
    assert seg([a, tmp_path / "photo.png"], ids=["x", "y"])[1].labels.shape == (40, 60)
    for empty in (np.zeros((0, 0, 3), np.uint8), Image.new("RGB", (0, 0))):
        with pytest.raises(ValueError, match="the image is empty"):
            seg(empty)
    with pytest.raises(ValueError, match=r"\(H, W\), \(H, W, 3\) or \(H, W, 4\); this one is \(4, 4, 5\)"):
        seg(np.zeros((4, 4, 5)))
    with pytest.raises(ValueError, match="not 'int'"):
        seg(3)


def test_any_pil_mode_and_a_batch(tmp_path):
    seg = deepcut.create_segmenter("kmeans", backbone="tiny_random", device="cpu")
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8))
    outs = seg([rgb, rgb.convert("L"), rgb.convert("RGBA")], ids=["a", "b", "c"])
    for out in outs:
        assert out.labels.shape == (40, 60) and out.mask.dtype == torch.bool
        assert out.soft is None and out.n_clusters == len(out.patch_labels.unique())
    # The same image with the same id gives the same result, alone or in a batch.
    alone = seg(rgb, ids="a")
    assert torch.equal(alone.labels, outs[0].labels)


def test_peers_show_the_vector_they_cut():
    seg = deepcut.create_segmenter("tokencut", backbone="tiny_random", device="cpu")
    image = Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    out = seg(image)
    assert out.eigenvector is not None and out.eigenvector.shape == out.grid
    # TokenCut's foreground is the side of the vector's mean holding its largest |value|.
    v = out.eigenvector.flatten()
    top = int(v.abs().argmax())
    side = (v > v.mean()) == (v[top] > v.mean())
    assert out.patch_labels.flatten()[top] == 1 and not (out.patch_labels.flatten().bool() & ~side).any()


@pytest.mark.parametrize("method", ["kmeans", "deepcut"])
@pytest.mark.parametrize("center", [True, False])
def test_every_method_sees_the_same_prepared_features(center, method):
    """backbone.center is a feature-preparation step, the same for every method."""
    seg = deepcut.create_segmenter(method, backbone="tiny_random", device="cpu",
                                   overrides=[f"backbone.center={str(center).lower()}"])
    image = Image.fromarray(np.random.default_rng(2).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    out = seg(image, ids="x")
    seg.extractor.center = False
    raw, _ = seg.extractor([seg.extractor.preprocess(image)])[0]
    expected = raw - raw.mean(0) if center else raw
    assert torch.allclose(out.features, expected, atol=1e-5)
    assert torch.equal(out.patch_labels, seg.method(expected, out.grid, seed=derive_seed(0, "x")))


def test_a_photo_over_max_pixels_gets_its_result_in_its_own_coordinates():
    """Issue 27: a photo shrunk to max_pixels came back with labels, mask and box of the shrunk
    image. They are in the photo's own (H, W) now, the same result upsampled and the box scaled."""
    rng = np.random.default_rng(0)
    photo = np.zeros((120, 160, 3), np.uint8)
    photo[30:90, 40:120] = 230
    photo = Image.fromarray(np.clip(photo + rng.integers(0, 20, photo.shape), 0, 255).astype(np.uint8))
    from deepcut.pipeline import bound_image
    small = bound_image(photo, 4800)
    assert small.size == (80, 60)
    bounded = deepcut.create_segmenter(backbone="tiny_random", device="cpu", overrides=["max_pixels=4800"])(photo)
    direct = deepcut.create_segmenter(backbone="tiny_random", device="cpu")(small)
    assert bounded.labels.shape == bounded.mask.shape == (120, 160)
    assert torch.equal(bounded.labels[::2, ::2], direct.labels) and torch.equal(bounded.mask[::2, ::2], direct.mask)
    assert torch.equal(bounded.box, direct.box * 2)
