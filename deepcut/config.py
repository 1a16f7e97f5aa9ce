"""Config composition, the one home for it: run.py (through @hydra.main on `CONFIGS`), the Python API,
evaluate.py, the benchmark and the demo all compose configs/config.yaml here. Light (Hydra only)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from deepcut.errors import ConfigError

CONFIGS = Path(__file__).resolve().parent.parent / "configs"

# The config groups of the stages a segmenter is built from (configs/<group>/<name>.yaml).
STAGE_GROUPS = ("backbone", "graph", "gnn", "loss", "optimizer", "mode", "postprocess")


def compose_config(method: str = "deepcut", overrides: Sequence[str] = (), **choices: str) -> DictConfig:
    """The run config `python run.py method=<method> <group>=<choice> ... <overrides>` would use."""
    unknown = sorted(set(choices) - set(STAGE_GROUPS))
    if unknown:
        raise ConfigError(f"create_segmenter({', '.join(f'{k}=...' for k in unknown)}): not a config group; "
                          f"choose options of {', '.join(STAGE_GROUPS)}, and give other settings as "
                          "overrides=['group.key=value', ...]")
    args = [f"method={method}", *(f"{g}={v}" for g, v in choices.items() if v is not None), *overrides]
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        return compose("config", overrides=args)
