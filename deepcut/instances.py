"""Stage 5b: a label map -> several object proposals per image (instances), and their COCO form.

Multi-object discovery (CutLER's MaskCut, Wang et al. 2023) scores class-agnostic instance masks
with COCO's AP/AR. Here any method's full-size label map gives them: every foreground label's
4-connected components of at least ``min_area`` of the image are proposals, so a clustering with
several foreground clusters (DeepCut with the frame rule, CC, k-means) and MaskCut's masks (one
label per mask) are read alike, and the number of objects need not be fixed.

Score: the proposal's area as a share of the image. Post-processing has no per-cluster confidence
that every method shares, and the size ranks a photo's main object first, as the single-object
output (the largest component) does; it is the one number COCOeval's ranking sees.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage


@dataclass
class Instances:
    """One image's proposals, by decreasing score: ``map`` (H, W) int64, 0 = none, i = the i-th;
    ``boxes`` (n, 4) float32 x0, y0, x1, y1 in pixel edges; ``scores`` (n,) float32."""
    map: torch.Tensor
    boxes: torch.Tensor
    scores: torch.Tensor

    def __len__(self) -> int:
        return len(self.scores)


def proposals(labels: torch.Tensor, most: int, min_area: float = 0.01) -> Instances:
    """The (H, W) label map's instance proposals (0 = background): each label > 0 split into its
    4-connected components, those covering at least ``min_area`` of the image kept, the ``most``
    largest returned (their area share is their score)."""
    lab = labels.cpu().numpy()
    found = []  # (pixels, component map, its index) per component
    for value in np.unique(lab[lab > 0]):
        components, n = ndimage.label(lab == value)
        pixels = np.bincount(components.ravel(), minlength=n + 1)
        found += [(int(pixels[j]), components, j) for j in range(1, n + 1) if pixels[j] >= min_area * lab.size]
    found = sorted(found, key=lambda f: -f[0])[:most]
    out = np.zeros(lab.shape, np.int64)
    boxes = np.zeros((len(found), 4), np.float32)
    for i, (_, components, j) in enumerate(found, start=1):
        inside = components == j
        out[inside] = i
        ys, xs = np.nonzero(inside)
        boxes[i - 1] = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
    scores = np.array([f[0] / lab.size for f in found], np.float32)
    return Instances(torch.from_numpy(out), torch.from_numpy(boxes), torch.from_numpy(scores))


def rle(mask: np.ndarray) -> dict:
    """A bool (H, W) mask as COCO's compressed RLE, JSON-ready (counts as text)."""
    from pycocotools import mask as coco_mask
    encoded = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in encoded["size"]], "counts": encoded["counts"].decode("ascii")}


def xywh(box) -> list[float]:
    x0, y0, x1, y1 = (float(v) for v in box)
    return [x0, y0, x1 - x0, y1 - y0]


def detections(found: Instances) -> list[dict]:
    """COCO results of one image (class-agnostic: category 1), without its image_id."""
    m = found.map.numpy()
    return [{"category_id": 1, "bbox": xywh(box), "segmentation": rle(m == i), "score": float(score)}
            for i, (box, score) in enumerate(zip(found.boxes, found.scores), start=1)]


def truth(sample) -> list[dict] | None:
    """A sample's class-agnostic ground truth for COCOeval: its instances (COCO: masks, crowd
    regions flagged), else its boxes (VOC: box AP only); None when it has neither."""
    if sample.instances is not None:
        return [{"bbox": xywh(t["box"]), "iscrowd": int(t["iscrowd"]),
                 **({"segmentation": rle(t["mask"]), "area": float(t["mask"].sum())} if t["mask"] is not None
                    else {"area": float((t["box"][2] - t["box"][0]) * (t["box"][3] - t["box"][1]))})}
                for t in sample.instances]
    if sample.boxes is not None:
        return [{"bbox": xywh(b), "iscrowd": 0, "area": float((b[2] - b[0]) * (b[3] - b[1]))} for b in sample.boxes]
    return None


def coco_id(sample_id: str) -> int:
    """The image_id an image's results carry in instances.json: the COCO id where the id is one
    (COCO's 12-digit ids), else a stable 31-bit hash of the id (the same in every shard)."""
    import zlib
    return int(sample_id) if sample_id.isdigit() else zlib.crc32(sample_id.encode()) & 0x7FFFFFFF
