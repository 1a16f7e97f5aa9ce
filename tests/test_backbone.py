"""Backbone stage on tiny random-weight ViTs: grids, facets, checkpoints."""
import os

import pytest
import timm
import torch
from PIL import Image

from deepcut.backbone import BackboneError, create_backbone, read_checkpoint
from deepcut.features import extract, grid_size, resize
from deepcut.pipeline import Extractor

TINY = dict(depth=2, embed_dim=32, num_heads=2)


def tiny(stride=None, layer=-1, name="vit_small_patch8_224", weights="random", **kw):
    return create_backbone(name, weights, stride, layer, **TINY, **kw)


@pytest.mark.parametrize("stride,resolution,grid", [(8, 64, (8, 8)), (4, 64, (15, 15)), (2, 64, (29, 29)), (8, 280, (35, 35)), (4, 280, (69, 69))])
def test_stride_and_resolution_give_the_expected_grid(stride, resolution, grid):
    model = tiny(stride)
    x = torch.randn(1, 3, resolution, resolution)
    assert grid_size(resolution, resolution, 8, stride) == grid
    assert extract(model, x, "key").shape == (1, grid[0] * grid[1], 32)


def test_paper_grids():
    assert grid_size(280, 280, 8, 8) == (35, 35)     # N = 1225
    assert grid_size(280, 280, 8, 4) == (69, 69)     # N = 4761
    assert grid_size(224, 224, 14, 14) == (16, 16)


def test_stride_must_divide_the_patch():
    with pytest.raises(BackboneError, match="stride=3"):
        tiny(3)


def test_facets_are_the_heads_concatenated_slices_of_qkv():
    model = tiny()
    x = torch.randn(2, 3, 32, 32)
    qkv = {}
    model.blocks[-1].attn.qkv.register_forward_hook(lambda m, i, o: qkv.setdefault("o", o))
    key = extract(model, x, "key")
    q, k, v = qkv["o"].chunk(3, dim=-1)  # timm's qkv Linear output is [q | k | v]
    assert torch.equal(key, k[:, 1:])
    assert torch.equal(extract(model, x, "query"), q[:, 1:])
    assert torch.equal(extract(model, x, "value"), v[:, 1:])
    assert extract(model, x, "token").shape == (2, 16, 32)
    with pytest.raises(ValueError, match="facet"):
        extract(model, x, "attn")


def test_register_tokens_are_dropped():
    model = create_backbone("vit_small_patch14_reg4_dinov2", "random", 14, **TINY)
    assert model.num_prefix_tokens == 5
    assert extract(model, torch.randn(1, 3, 56, 56), "key").shape == (1, 16, 32)


def test_layer_truncates_the_model():
    assert len(tiny(layer=0).blocks) == 1
    with pytest.raises(BackboneError, match="layer=5"):
        tiny(layer=5)


def test_unknown_backbone_name_is_a_clear_error():
    with pytest.raises(BackboneError, match="not a timm model"):
        create_backbone("vit_does_not_exist", "random")


def _reference_state():
    torch.manual_seed(0)
    return timm.create_model("vit_small_patch8_224", pretrained=False, **TINY).state_dict()


def test_dino_full_training_checkpoint_loads_the_student(tmp_path):
    state = _reference_state()
    teacher = {f"backbone.{k}": torch.zeros_like(v) for k, v in state.items()}
    student = {f"module.backbone.{k}": v for k, v in state.items()}
    student["module.head.mlp.0.weight"] = torch.randn(4, 4)  # DINO head: not part of the ViT
    path = tmp_path / "checkpoint.pth"
    torch.save({"student": student, "teacher": teacher, "epoch": 100}, path)
    model = tiny(weights=str(path))
    assert torch.equal(model.blocks[0].attn.qkv.weight, state["blocks.0.attn.qkv.weight"])
    teacher_model = tiny(weights=str(path), checkpoint_key="teacher")
    assert teacher_model.blocks[0].attn.qkv.weight.abs().sum() == 0


def test_plain_state_dict_and_safetensors(tmp_path):
    from safetensors.torch import save_file
    state = _reference_state()
    torch.save(state, tmp_path / "plain.pth")
    save_file(state, tmp_path / "w.safetensors")
    for name in ("plain.pth", "w.safetensors"):
        model = tiny(weights=str(tmp_path / name))
        assert torch.equal(model.cls_token, state["cls_token"])
    assert set(read_checkpoint(tmp_path / "plain.pth")) == set(state)


def test_mismatched_checkpoint_names_the_file(tmp_path):
    state = _reference_state()
    state.pop("norm.weight")
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(BackboneError, match=r"broken.pth.*1 missing keys \(e.g. \['norm.weight'\]\)"):
        tiny(weights=str(tmp_path / "broken.pth"))
    with pytest.raises(BackboneError, match="no such file"):
        tiny(weights=str(tmp_path / "missing.pth"))


def test_resize_modes_keep_whole_patches():
    image = Image.new("RGB", (300, 200))
    assert resize(image, 280, 8, "square").size == (280, 280)
    assert resize(image, 112, 8, "short_side").size == (168, 112)  # aspect 1.5 kept
    assert resize(image, 100, 14, "short_side").size == (140, 98)   # both sides rounded down to /14
    assert resize(Image.new("RGB", (2000, 10)), 64, 8, "short_side").size == (256, 8)  # long side capped at 4x


def test_extractor_batches_same_size_images_and_keeps_order():
    ex = Extractor("vit_small_patch8_224", "random", facet="key", layer=-1, stride=None, resolution=32,
                   resize="short_side", batch_size=2, device="cpu", model_kwargs=TINY)
    images = [Image.new("RGB", (64, 32), (i * 40, 0, 0)) for i in range(3)] + [Image.new("RGB", (32, 64))]
    out = ex([ex.preprocess(im) for im in images])
    assert [g for _, g in out] == [(4, 8)] * 3 + [(8, 4)]
    alone = ex([ex.preprocess(images[2])])[0][0]
    assert torch.allclose(out[2][0], alone, atol=1e-5)


def test_unreachable_hub_is_a_clear_error(monkeypatch):
    import huggingface_hub.constants
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # as with no network, minus the retries
    monkeypatch.setenv("HF_HOME", "/nonexistent-deepcut-test")  # no locally cached copy either
    with pytest.raises(BackboneError, match="backbone.weights=hub could not fetch.*dinov2_vits14_offline"):
        create_backbone("vit_small_patch16_224.dino", "hub")


def test_registered_weights_are_loaded_by_name(monkeypatch):
    """backbone.weights=<name> of a registered source loads its state dict (strictly)."""
    import sys
    import types

    from deepcut import backbone

    reference = create_backbone("vit_small_patch8_224", "random", **TINY).state_dict()
    state = {k: torch.full_like(v, 0.5) for k, v in reference.items()}
    module = types.ModuleType("fake_weights")
    module.load = lambda: state
    monkeypatch.setitem(sys.modules, "fake_weights", module)
    backbone.register_weights("halves", "fake_weights:load")
    try:
        model = create_backbone("vit_small_patch8_224", "halves", **TINY)
        assert all(torch.equal(v, torch.full_like(v, 0.5)) for v in model.state_dict().values())
        with pytest.raises(ValueError, match="registered twice"):
            backbone.register_weights("halves", "fake_weights:load")
    finally:
        backbone.WEIGHTS.pop("halves", None)


def test_damaged_checkpoint_is_a_backbone_error(tmp_path):
    from deepcut.backbone import BackboneError, read_checkpoint
    (tmp_path / "garbage.pth").write_bytes(os.urandom(1000))
    (tmp_path / "garbage.safetensors").write_bytes(os.urandom(1000))
    for name in ("garbage.pth", "garbage.safetensors"):
        with pytest.raises(BackboneError, match="not a readable checkpoint"):
            read_checkpoint(tmp_path / name)


def test_a_list_of_layers_gives_their_features_side_by_side(tmp_path):
    """backbone.layer=[0, -1]: the two blocks' keys concatenated (hypercolumns), each exactly what
    that layer alone gives; the feature cache keeps the list apart from the last block alone."""
    from deepcut.cache import FeatureCache

    kw = dict(name="vit_small_patch8_224", weights="random", facet="key", stride=None, resolution=32,
              resize="square", batch_size=2, device="cpu", model_kwargs={**TINY, "depth": 3})
    image = Extractor(layer=-1, **kw).preprocess(Image.new("RGB", (40, 40), (90, 20, 200)))
    first, last = (Extractor(layer=layer, **kw)([image])[0][0] for layer in (0, -1))
    cache = FeatureCache(tmp_path)
    both = Extractor(layer=[0, -1], cache=cache, **kw)([image])[0][0]
    assert both.shape == (16, 64) and torch.equal(both[:, :32], first) and torch.equal(both[:, 32:], last)
    assert torch.equal(Extractor(layer=-1, cache=cache, **kw)([image])[0][0], last)  # not the list's entry
    assert torch.equal(Extractor(layer=[0, -1], cache=cache, **kw)([image])[0][0], both)
    with pytest.raises(BackboneError, match=r"backbone.layer=\[0, 3\]"):
        create_backbone("vit_small_patch8_224", "random", layer=[0, 3], **{**TINY, "depth": 3})


def test_cls_attention_is_the_attention_timm_computes():
    """The saliency's CLS attention equals the weights of timm's own (unfused) attention."""
    model = tiny(layer=-1)
    images = torch.randn(2, 3, 32, 32)
    block = model.blocks[-1].attn
    seen = {}
    block.fused_attn = False  # timm's explicit path, whose softmax goes through attn_drop
    handle = block.attn_drop.register_forward_hook(lambda m, i, o: seen.setdefault("w", o))
    try:
        features, attention = extract(model, images, "key", attention=True)
    finally:
        handle.remove()
    assert attention.shape == (2, TINY["num_heads"], 16) and features.shape == (2, 16, TINY["embed_dim"])
    assert torch.allclose(attention, seen["w"][:, :, 0, model.num_prefix_tokens:], atol=1e-6)
