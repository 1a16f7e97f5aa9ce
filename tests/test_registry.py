"""The method registry: adding a method is one module in deepcut/methods/ plus one config file, and
every list of methods (run.py --help, the demo, validation) reads the registry."""
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from deepcut.methods import method_entry, method_names
from deepcut.registry import METHODS, UnknownMethod

REPO = Path(__file__).resolve().parent.parent

# A toy peer: the left or right half of the grid is the object; its setting has a check of its own.
TOY = '''
"""A toy method (a test's): the left or right half of the patch grid is foreground."""
import torch

from deepcut.registry import register_method


def check(cfg):
    side = cfg.method.get("side")
    return [] if side in ("left", "right") else [f"method.side={side!r}: use left or right"]


@register_method("toy", check=check)
def toy(features, grid, *, seed=0, side="left"):
    mask = torch.zeros(grid, dtype=torch.long)
    half = grid[1] // 2
    mask[:, :half] = side == "left"
    mask[:, half:] = side == "right"
    return mask
'''

PROBE = '''
import json
from PIL import Image
import deepcut
from deepcut import demo
from deepcut.config import compose_config
from deepcut.errors import ConfigError
from deepcut.validate import validate

seg = deepcut.create_segmenter("toy", backbone="tiny_random", overrides=["method.side=right", "postprocess.bilateral=false"])
out = seg(Image.new("RGB", (64, 32)))
try:
    validate(compose_config("toy", ["method.side=up"]))
    problem = None
except ConfigError as err:
    problem = str(err)
print(json.dumps({"demo": demo.method_choices(), "mask": out.patch_labels.tolist(), "problem": problem}))
'''


def test_a_method_is_one_module_and_one_config_file(tmp_path):
    """A copy of the project with nothing but deepcut/methods/toy.py and configs/method/toy.yaml added:
    run.py --help offers it, the demo lists it, create_segmenter runs it, and validation applies its check."""
    copy = tmp_path / "project"
    ignore = shutil.ignore_patterns("__pycache__")
    for folder in ("deepcut", "configs"):
        shutil.copytree(REPO / folder, copy / folder, ignore=ignore)
    shutil.copy(REPO / "run.py", copy / "run.py")
    (copy / "deepcut" / "methods" / "toy.py").write_text(textwrap.dedent(TOY))
    (copy / "configs" / "method" / "toy.yaml").write_text("# A test's toy method.\nname: toy\nside: left\n")

    def python(*args):  # sys.path[0] is the copy, so its deepcut is the one imported
        return subprocess.run([sys.executable, *args], cwd=copy, capture_output=True, text=True, timeout=300)

    help_text = python("run.py", "--help")
    assert help_text.returncode == 0, help_text.stderr
    offered = next(line for line in help_text.stdout.splitlines() if line.startswith("method:"))
    assert "toy" in offered.split(": ")[1].split(", ")

    probe = python("-c", PROBE)
    assert probe.returncode == 0, probe.stderr
    seen = json.loads(probe.stdout.strip().splitlines()[-1])
    assert "toy" in seen["demo"] and seen["demo"][0] == "deepcut"
    assert seen["mask"][0] == [0] * (len(seen["mask"][0]) // 2) + [1] * (len(seen["mask"][0]) - len(seen["mask"][0]) // 2)
    assert seen["problem"] == "method.side='up': use left or right"


def test_every_method_config_names_a_registered_method_and_back():
    configs = {p.stem for p in (REPO / "configs" / "method").glob("*.yaml")}
    assert configs == set(method_names())


def test_an_unknown_method_is_a_config_error_naming_the_registered_ones():
    with pytest.raises(UnknownMethod, match="method.name='nope': not a registered method; use one of coseg, deepcut"):
        method_entry("nope")
    assert "deepcut" in METHODS and METHODS["deepcut"].groups == ("graph", "gnn", "loss", "optimizer", "mode")
