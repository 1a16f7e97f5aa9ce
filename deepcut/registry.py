"""The method registry, timm-style: a name -> how to build the method from a run config, which
config groups its results depend on (settings.json records only those) and how to check its
settings. A leaf: the method modules register themselves when `deepcut.methods` is imported
(as timm's models/__init__ loads its families), and everything that needs the list of methods
imports it from there.

    @register_method("tokencut", check=...)
    def tokencut(features, grid, *, seed=0, tau=0.2, ...): ...

A function registered as is is built as ``partial(fn, **method params)`` from configs/method/<name>.yaml
(every key but ``name``); a method that reads other groups (DeepCut: graph, gnn, loss, optimizer,
mode) registers a ``build(cfg)`` of its own. ``check(cfg)`` returns one paragraph per problem of
the method's settings (validate.py gathers them with the rest).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

from omegaconf import DictConfig, OmegaConf

from deepcut.errors import ConfigError

# Config groups that only some methods read (DeepCut's stages); settings.json records a group only
# for the methods that read it.
METHOD_GROUPS = ("graph", "gnn", "loss", "optimizer", "mode")


def no_problems(cfg: DictConfig) -> list[str]:
    return []


@dataclass(frozen=True)
class MethodEntry:
    name: str
    build: Callable[[DictConfig], Callable]   # run config -> method(features, grid, seed=...) or a DeepCut
    groups: tuple[str, ...] = ()              # config groups besides `method` that change its results
    check: Callable[[DictConfig], list[str]] = no_problems  # run config -> one paragraph per problem


METHODS: dict[str, MethodEntry] = {}


class UnknownMethod(ConfigError):
    pass


def method_params(cfg: DictConfig) -> dict:
    """The method's own settings: configs/method/<name>.yaml without its name."""
    params = OmegaConf.to_container(cfg.method, resolve=True)
    params.pop("name", None)
    return params


def register_method(name: str, *, groups: tuple[str, ...] = (), build: Callable | None = None,
                    check: Callable[[DictConfig], list[str]] = no_problems):
    def register(fn):
        if name in METHODS:
            raise ValueError(f"method {name!r} is registered twice")
        METHODS[name] = MethodEntry(name, build or (lambda cfg: partial(fn, **method_params(cfg))), tuple(groups), check)
        return fn
    return register


def method_names() -> list[str]:
    return sorted(METHODS)


def method_entry(name: str) -> MethodEntry:
    if name not in METHODS:
        raise UnknownMethod(f"method.name={name!r}: not a registered method; use one of {', '.join(method_names())}")
    return METHODS[name]


def create_method(cfg: DictConfig):
    """The method a run config names (cfg.method.name), built from its settings."""
    return method_entry(cfg.method.name).build(cfg)
