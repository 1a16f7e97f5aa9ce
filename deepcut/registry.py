"""The method registry, timm-style: a name -> how to build the method from a run config, and which
config groups its results depend on (settings.json records only those).

    @register_method("tokencut")
    def tokencut(features, grid, *, seed=0, tau=0.2, ...): ...

A function registered as is is built as ``partial(fn, **method params)`` from configs/method/<name>.yaml
(every key but ``name``); a method that reads other groups (DeepCut: graph, gnn, loss, optimizer,
mode) registers a ``build(cfg)`` of its own. `create_method(cfg)` is what run.py and the Python API call.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

from omegaconf import DictConfig, OmegaConf


# Config groups that only some methods read (DeepCut's stages); settings.json records a group only
# for the methods that read it.
METHOD_GROUPS = ("graph", "gnn", "loss", "optimizer", "mode")


@dataclass(frozen=True)
class MethodEntry:
    name: str
    build: Callable[[DictConfig], Callable]   # run config -> method(features, grid, seed=...) or a DeepCut
    groups: tuple[str, ...] = ()              # config groups besides `method` that change its results


METHODS: dict[str, MethodEntry] = {}


class UnknownMethod(ValueError):
    pass


def method_params(cfg: DictConfig) -> dict:
    """The method's own settings: configs/method/<name>.yaml without its name."""
    params = OmegaConf.to_container(cfg.method, resolve=True)
    params.pop("name", None)
    return params


def register_method(name: str, *, groups: tuple[str, ...] = (), build: Callable | None = None):
    def register(fn):
        if name in METHODS:
            raise ValueError(f"method {name!r} is registered twice")
        METHODS[name] = MethodEntry(name, build or (lambda cfg: partial(fn, **method_params(cfg))), tuple(groups))
        return fn
    return register


def method_entry(name: str) -> MethodEntry:
    import deepcut.methods  # noqa: F401 - registers every method
    if name not in METHODS:
        raise UnknownMethod(f"method.name={name!r}: not a registered method; use one of {', '.join(sorted(METHODS))}")
    return METHODS[name]


def create_method(cfg: DictConfig):
    """The method a run config names (cfg.method.name), built from its settings."""
    return method_entry(cfg.method.name).build(cfg)
