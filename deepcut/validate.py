"""A run's settings checked before any work (run.py calls `validate` first).

Each problem is one paragraph naming the setting, its value and what is allowed; all problems are
reported together in one `ConfigError`. Only what the stages would find late, or report badly, is
checked here: the dataset constructors (DatasetError) and create_backbone (BackboneError, e.g. a
checkpoint that does not fit the architecture) already raise good errors of their own, and run.py
reports those the same way.
"""
from __future__ import annotations

import difflib
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from deepcut import postprocess
from deepcut.backbone import WEIGHTS, layer_indices
from deepcut.errors import ConfigError, is_whole
from deepcut.features import FACETS
from deepcut.methods import method_entry
from deepcut.registry import UnknownMethod


# Summary metrics a sweep can optimise (summary.json keys; higher is better except time_s).
OBJECTIVES = ("miou", "acc", "max_f_beta", "corloc", "nmi", "ari", "time_s")
# The ground truth each objective is computed from (the rest need masks).
OBJECTIVE_NEEDS = {"corloc": "boxes", "nmi": "parts", "ari": "parts", "time_s": None}


def objective_problem(cfg: DictConfig, dataset) -> str | None:
    """Why the run's objective cannot be computed on ``dataset`` (its first image's ground truth),
    or None: a sweeper would otherwise run every trial and fail on the first missing value."""
    objective = cfg.get("objective")
    if not objective or not len(dataset):
        return None
    need = OBJECTIVE_NEEDS.get(objective, "masks")
    entry = dataset.entries[0]
    have = {"masks": entry.mask is not None, "boxes": dataset._boxes(entry) is not None, "parts": entry.parts is not None,
            None: True}
    if dataset.ground_truth and have[need]:
        return None
    return (f"objective={objective}: needs {need} as ground truth, and {dataset.name} has none for its images "
            f"(first: {entry.id}); choose an objective its ground truth gives, or a data set with {need}")


def validate(cfg: DictConfig, architecture: bool = True) -> None:
    """Every setting's own checks, all reported together; then (``architecture``) those the
    backbone's architecture decides, which need timm (3 s to import): run.py asks for them only
    once the settings and the data set passed, so that a wrong value is answered in about 2 s."""
    problems = _backbone(cfg.backbone) + _method(cfg) + postprocess.check(cfg.postprocess) + _run(cfg)
    if problems:
        raise ConfigError("\n\n".join(problems))  # one paragraph each
    if architecture:
        validate_architecture(cfg.backbone)


def validate_architecture(b: DictConfig) -> None:
    if problems := _architecture(b):
        raise ConfigError("\n\n".join(problems))


def _backbone(b: DictConfig) -> list[str]:
    """The backbone settings that need no model."""
    problems = []
    if not isinstance(b.get("name"), str):
        problems.append(f"backbone.name={b.get('name')!r}: the name of a timm ViT, e.g. vit_small_patch8_224.dino")
    stride = b.get("stride")
    if stride is not None and (not is_whole(stride) or stride <= 0):
        problems.append(f"backbone.stride={stride!r}: a whole number of pixels > 0 that divides the patch size, "
                        "or null (= the patch size)")
    layer = b.get("layer", -1)
    layers = list(layer) if isinstance(layer, Sequence) and not isinstance(layer, str) else [layer]
    if not layers or not all(is_whole(v) for v in layers) or len(set(layers)) != len(layers):
        problems.append(f"backbone.layer={_plain(layer)!r}: the index of a block (-1 for the last), or a list of "
                        "different ones, e.g. [-4,-1] (their features concatenated)")
    choices = {"facet": FACETS, "resize": ("square", "short_side"), "precision": ("fp32", "bf16", "tf32")}
    for key, allowed in choices.items():
        if key in b and b[key] not in allowed:
            problems.append(f"backbone.{key}={b[key]!r}: use one of {', '.join(allowed)}")
    if not isinstance(b.get("batch_size"), int) or b.batch_size < 1:
        problems.append(f"backbone.batch_size={b.get('batch_size')!r}: must be a whole number >= 1")
    if not isinstance(b.get("center", False), bool):
        problems.append(f"backbone.center={b.center!r}: use true (centre each image's features) or false")
    if not is_whole(b.get("log_bin", 0)) or b.get("log_bin", 0) < 0:
        problems.append(f"backbone.log_bin={b.log_bin!r}: the number of log-bin levels, a whole number >= 0 (0 = off)")
    weights = str(b.get("weights", "hub"))
    if weights not in WEIGHTS and not Path(weights).expanduser().is_file():
        problems.append(f"backbone.weights={weights!r}: no such file (use {', '.join(WEIGHTS)} or the path "
                        "of a .pth/.pt/.safetensors checkpoint)")
    return problems


def _architecture(b: DictConfig) -> list[str]:
    """The settings the model's architecture decides: a timm ViT, its patch size and depth."""
    import timm

    problems = []
    name = b.name
    if not timm.is_model(name):
        close = difflib.get_close_matches(str(name), timm.list_models(pretrained=True) + timm.list_models(), n=3)
        hint = f"; close names: {', '.join(close)}" if close else ""
        return [f"backbone.name={name!r} is not a timm model (any ViT of timm.list_models('vit_*') "
                f"works, e.g. vit_small_patch8_224.dino){hint}"]
    kwargs = b.get("model_kwargs") or {}
    kwargs = OmegaConf.to_container(kwargs, resolve=True) if OmegaConf.is_config(kwargs) else dict(kwargs)
    try:
        with torch.device("meta"):  # the architecture only: no weights, no download, no memory
            model = timm.create_model(name, pretrained=False, dynamic_img_size=True, **kwargs)
    except TypeError as err:
        if "dynamic_img_size" in str(err):  # not a ViT: timm's ViTs all take it, a ResNet or ConvNeXt does not
            return [f"backbone.name={name!r} is not a ViT (timm builds it without patch tokens); DeepCut needs a "
                    "ViT's patch tokens: any of timm.list_models('vit_*'), e.g. vit_small_patch8_224.dino"]
        return [f"backbone.model_kwargs={kwargs}: {name} does not accept them ({err})"]
    patch_embed = getattr(model, "patch_embed", None)
    if patch_embed is None or not hasattr(model, "blocks"):
        return [f"backbone.name={name!r} is not a ViT (no patch embedding); DeepCut needs patch tokens"]
    patch, depth = patch_embed.patch_size[0], len(model.blocks)
    stride = b.get("stride")
    if stride is not None and patch % stride:
        allowed = ", ".join(str(d) for d in range(1, patch + 1) if patch % d == 0)
        problems.append(f"backbone.stride={stride!r}: {name} has {patch}px patches, so the stride must divide "
                        f"{patch} ({allowed}) or be null (= {patch})")
    layer = b.get("layer", -1)
    if layer_indices(layer, depth) is None:
        problems.append(f"backbone.layer={_plain(layer)!r}: {name} has {depth} blocks (use 0..{depth - 1}, or -1 for "
                        "the last, or a list of different ones)")
    resolution = b.get("resolution")
    step = stride if stride is not None and not patch % stride else patch
    if not isinstance(resolution, int) or isinstance(resolution, bool) or resolution < patch + step:
        problems.append(f"backbone.resolution={resolution!r}: must be a whole number of pixels >= {patch + step} "
                        f"(a grid of at least 2x2 patches of {patch}px at stride {step}; one patch cannot be split)")
    return problems


def _plain(value):
    """A config value as the user typed it (a ListConfig prints as a list)."""
    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value


def _method(cfg: DictConfig) -> list[str]:
    """The method's own settings, by the check its registry entry carries."""
    try:
        entry = method_entry(str(cfg.method.get("name")))
    except UnknownMethod as err:
        return [str(err)]
    return entry.check(cfg)


def _run(cfg: DictConfig) -> list[str]:
    problems = []
    device = str(cfg.get("device", "auto"))
    if device != "auto":
        try:
            kind = torch.device(device).type
        except RuntimeError:
            kind = None
        if kind is None:
            problems.append(f"device={device!r}: use auto, cpu, cuda or cuda:N")
        elif kind == "cuda" and not torch.cuda.is_available():
            problems.append(f"device={device!r} but no CUDA GPU is visible (CUDA_VISIBLE_DEVICES="
                            f"{os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}); use device=auto or device=cpu")
    if not isinstance(cfg.get("num_workers", 0), int) or cfg.get("num_workers", 0) < 0:
        problems.append(f"num_workers={cfg.num_workers!r}: must be a whole number >= 0 (0 = decode in the main process)")
    if cfg.get("overlap", "auto") not in (True, False, "auto"):
        problems.append(f"overlap={cfg.overlap!r}: use true, false or auto (true on CUDA)")
    seed = cfg.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        problems.append(f"seed={seed!r}: must be a whole number")
    objective = cfg.get("objective")
    if objective is not None and objective not in OBJECTIVES:
        problems.append(f"objective={objective!r}: use null or a summary metric: {', '.join(OBJECTIVES)}")
    limit = cfg.dataset.get("limit") if "dataset" in cfg else None
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        problems.append(f"dataset.limit={limit!r}: must be null (every image) or a whole number of images >= 1")
    max_pixels = cfg.get("max_pixels")
    if max_pixels is not None and (not isinstance(max_pixels, int) or max_pixels < 64 * 64):
        problems.append(f"max_pixels={max_pixels!r}: must be null (no limit) or a whole number of pixels >= 4096")
    return problems
