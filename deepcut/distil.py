"""Self-training (`task=distil`): a light head on the frozen patch features learns a teacher's masks.

The teacher is the run's method (the configs' default DeepCut unless told otherwise): run.py first
segments the image set as any run does (results.csv, labels/, resume), with the data set's ground
truth stripped, so no mask, box or keypoint of it is ever read. Each image's saved mask, area-averaged
onto its patch grid, is the target of every patch; a head trained with a binary cross-entropy on all
the images' patches then segments with one forward (`method=head`). FOUND (Siméoni et al., CVPR
2023) trains one 1x1 convolution this way; a student trained on many images averages out the
teacher's per-image mistakes. A second round (`task.rounds=2`) trains again on the student's own
masks (refined by the same post-processing), i.e. self-training.

head.pt holds the head's weights, its kind and the backbone settings its features come from;
loading it for other settings is a ConfigError naming the first that differs. `task.teacher_dir`
trains from the masks of an earlier distil run's directory instead of segmenting again (so head
settings can be compared on one teacher pass).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from deepcut.errors import ConfigError

HEADS = {"linear": "one 1x1 convolution (FOUND's head)", "mlp": "two layers with a GELU between"}
# The backbone settings a head's input features depend on (configs/backbone): checked at load.
FEATURE_KEYS = ("name", "weights", "facet", "layer", "stride", "resolution", "resize", "center", "log_bin",
                "checkpoint_key", "model_kwargs")


class Head(nn.Module):
    """(N, C) patch features -> (N,) foreground logits."""

    def __init__(self, dim: int, kind: str = "linear", hidden: int = 256):
        super().__init__()
        if kind not in HEADS:
            raise ConfigError(f"task.head={kind!r}: use " + " or ".join(f"{k} ({v})" for k, v in HEADS.items()))
        self.kind, self.hidden = kind, hidden
        self.net = nn.Linear(dim, 1) if kind == "linear" else nn.Sequential(nn.Linear(dim, hidden), nn.GELU(),
                                                                            nn.Linear(hidden, 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features).squeeze(-1)


def fit(features: list[torch.Tensor], targets: list[torch.Tensor], *, kind: str = "linear", hidden: int = 256,
        epochs: int = 20, lr: float = 1e-3, weight_decay: float = 0.01, batch_patches: int = 4096,
        seed: int = 0) -> tuple[Head, list[float]]:
    """A head trained on every image's (N_i, C) features against its (N_i,) targets in [0, 1]
    (soft: a patch half covered by the mask is 0.5), AdamW on shuffled batches of patches with the
    binary cross-entropy; the mean loss of each epoch."""
    x = torch.cat([f.float() for f in features])
    y = torch.cat([t.float() for t in targets])
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = Head(x.shape[1], kind, hidden)
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    losses = []
    for _ in range(epochs):
        total = 0.0
        for idx in torch.randperm(len(x), generator=generator).split(batch_patches):
            loss = F.binary_cross_entropy_with_logits(head(x[idx]), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
        losses.append(total / len(x))
    return head.eval(), losses


def grid_target(mask: np.ndarray, grid: tuple[int, int]) -> torch.Tensor:
    """A full-size bool mask -> (h*w,) the share of each patch cell it covers (the features' grid
    spans the whole image, whatever its resize)."""
    m = torch.from_numpy(np.ascontiguousarray(mask)).float()[None, None]
    return F.adaptive_avg_pool2d(m, grid).flatten()


def feature_settings(backbone) -> dict:
    """The backbone settings (configs/backbone) a head's input features depend on, plain values."""
    from omegaconf import OmegaConf
    b = OmegaConf.to_container(backbone, resolve=True) if OmegaConf.is_config(backbone) else dict(backbone)
    return {k: b.get(k) for k in FEATURE_KEYS}


def save(path: Path, head: Head, backbone, info: dict) -> None:
    from deepcut.files import atomic_write
    record = {"state_dict": head.state_dict(), "kind": head.kind, "hidden": head.hidden,
              "dim": head.net[0].in_features if head.kind == "mlp" else head.net.in_features,
              "backbone": feature_settings(backbone), "info": info}
    atomic_write(path, lambda tmp: torch.save(record, tmp))


def load(path, backbone) -> Head:
    """head.pt's head, refused (ConfigError) when it is missing, not a head, or was trained on the
    features of other backbone settings than ``backbone``'s."""
    path = Path(str(path))
    if not path.is_file():
        raise ConfigError(f"method.checkpoint={str(path)!r}: no such file; give the head.pt a "
                          "`python run.py task=distil ...` run wrote into its run directory")
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
        head = Head(record["dim"], record["kind"], record["hidden"])
        head.load_state_dict(record["state_dict"])
    except Exception as err:  # noqa: BLE001 - any unreadable or foreign file is the same user error
        raise ConfigError(f"method.checkpoint={str(path)!r} is not a head written by task=distil "
                          f"({type(err).__name__}: {str(err)[:200]})") from None
    wanted, trained = feature_settings(backbone), record["backbone"]
    for key in FEATURE_KEYS:
        if wanted.get(key) != trained.get(key):
            raise ConfigError(f"method.checkpoint={str(path)!r} was trained on features with backbone.{key}="
                              f"{trained.get(key)!r}, this run's is {wanted.get(key)!r}; use the backbone settings "
                              "it was trained for, or train a head for these (task=distil)")
    return head.eval()


def train(cfg, out: Path, dataset, segmenter, ids: list[str], teacher: Path | None = None) -> dict:
    """The head of a distil run, from the teacher masks ``teacher``'s labels/ (default: the run's
    own) hold for ``ids``; written to out/head.pt. Returns what the summary records of it."""
    from tqdm import tqdm

    from deepcut.pipeline import bound_image

    task = cfg.task
    index = {sid: i for i, sid in enumerate(dataset.ids)}
    features, targets, images = [], [], []
    for start in tqdm(range(0, len(ids), 32), desc="head: features", unit="batch", dynamic_ncols=True):
        chunk = ids[start:start + 32]
        shown = [bound_image(dataset[index[sid]].image, segmenter.max_pixels) for sid in chunk]  # as run.py saw them
        for sid, image, (f, grid, *_) in zip(chunk, shown, segmenter.extractor([segmenter.extractor.preprocess(im) for im in shown])):
            path = (teacher or out) / "labels" / f"{sid}.png"
            with Image.open(path) as png:
                mask = np.asarray(png) > 0
            if mask.shape != (image.height, image.width):
                raise ValueError(f"{path} is {mask.shape}, its image {image.size[::-1]}: not the labels of this run's images")
            features.append(segmenter.prepare(f, grid)[0].cpu())
            targets.append(grid_target(mask, grid))
            images.append((image, grid))
    params = dict(kind=task.head, hidden=task.hidden, epochs=task.epochs, lr=task.lr,
                  weight_decay=task.weight_decay, batch_patches=task.batch_patches, seed=cfg.seed)
    head, losses = fit(features, targets, **params)
    final = [losses[-1]]
    for _ in range(task.rounds - 1):  # self-training: the student's refined masks become the targets
        with torch.no_grad():
            student = [(head(f) > 0).long().view(grid) for f, (_, grid) in zip(features, images)]
        targets = [grid_target(segmenter.post(lab, image)[1].numpy(), grid) for lab, (image, grid) in zip(student, images)]
        head, losses = fit(features, targets, **params)
        final.append(losses[-1])
    with torch.no_grad():  # how often the head's patch decision is its last targets' (> half covered)
        agreement = float(np.mean([float(((head(f) > 0) == (t > 0.5)).float().mean()) for f, t in zip(features, targets)]))
    save(out / "head.pt", head, cfg.backbone, {"images": len(ids), "dataset": dataset.name, "rounds": task.rounds,
                                               "teacher": str(teacher) if teacher else cfg.method.name})
    return {"head": str(out / "head.pt"), "head_loss": final, "head_agreement": agreement}
