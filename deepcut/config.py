"""Config composition, the one home for it: run.py (through @hydra.main on `CONFIGS`), the Python API,
evaluate.py, the benchmark and the demo all compose configs/config.yaml here. Light (Hydra only)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from deepcut.errors import ConfigError

CONFIGS = Path(__file__).resolve().parent.parent / "configs"

# The config groups of the stages a segmenter is built from (configs/<group>/<name>.yaml).
STAGE_GROUPS = ("backbone", "graph", "gnn", "loss", "optimizer", "mode", "postprocess")


def listed(overrides) -> list[str]:
    """Overrides as a list of strings; a bare string (a common slip) is a ConfigError, not n overrides of one letter."""
    if isinstance(overrides, str) or not all(isinstance(o, str) for o in overrides):
        raise ConfigError(f"overrides={overrides!r}: give a list of 'group.key=value' strings, e.g. "
                          "overrides=['loss.k=3', 'postprocess.bilateral=false']")
    return list(overrides)


def compose_config(method: str = "deepcut", overrides: Sequence[str] = (), **choices: str) -> DictConfig:
    """The run config `python run.py method=<method> <group>=<choice> ... <overrides>` would use.
    An option that does not exist, a key no config has or an override that does not parse is a
    ConfigError naming it and what is allowed (not Hydra's search-path dump)."""
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException

    unknown = sorted(set(choices) - set(STAGE_GROUPS))
    if unknown:
        raise ConfigError(f"create_segmenter({', '.join(f'{k}=...' for k in unknown)}): not a config group; "
                          f"choose options of {', '.join(STAGE_GROUPS)}, and give other settings as "
                          "overrides=['group.key=value', ...]")
    args = [f"method={method}", *(f"{g}={v}" for g, v in choices.items() if v is not None), *listed(overrides)]
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        try:
            return compose("config", overrides=args)
        except MissingConfigException as e:  # an option with no configs/<group>/<option>.yaml
            group, _, option = str(e.missing_cfg_file).rpartition("/")
            raise ConfigError(f"{group}={option!r}: not an option of configs/{group}/; use one of "
                              f"{', '.join(e.options or [])}") from None
        except OverrideParseException as e:
            raise ConfigError(f"overrides={list(overrides)!r}: {str(e).splitlines()[0]}; each is 'group.key=value' "
                              "(Hydra's override grammar)") from None
        except ConfigCompositionException as e:
            key = str(e).split("'")[1] if str(e).count("'") >= 2 else ""
            node = compose("config", overrides=[a for a in args if not a.startswith(key + "=")]) if key else None
            parent = OmegaConf.select(node, key.rpartition(".")[0]) if node is not None and "." in key else None
            known = f"; the keys there are {', '.join(map(str, parent))}" if hasattr(parent, "keys") else ""
            raise ConfigError(f"{key or 'overrides'}: not a setting of the configs{known}") from None
