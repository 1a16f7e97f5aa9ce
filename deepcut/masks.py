"""Stage 5: patch labels -> contiguous labels, foreground mask, boxes.

Which clusters are background (`background_clusters`) is decided on the image border, the
one-patch-wide frame of the patch grid: salient objects rarely fill the frame, the scene behind
them usually does. Every function is tensor in, tensor out.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage


def border_counts(labels: torch.Tensor, num_labels: int) -> torch.Tensor:
    """How many frame cells of the (h, w) grid each label covers."""
    frame = torch.ones_like(labels, dtype=torch.bool)
    frame[1:-1, 1:-1] = False
    return torch.bincount(labels[frame].flatten(), minlength=num_labels)


# background rules: how clusters become background (mode.background; kmeans' background).
BACKGROUND_RULES = ("border", "frame")
BACKGROUND_ALLOWED = ("use border (the cluster most on the image border) or frame (every cluster on the border "
                      "as often as the grid)")


def background_clusters(labels: torch.Tensor, num_labels: int, rule: str = "border") -> torch.Tensor:
    """(num_labels,) bool: which clusters of an (h, w) map of labels < num_labels are background
    (`background_of` its clusters' frame cells and sizes)."""
    return background_of(border_counts(labels, num_labels), torch.bincount(labels.flatten(), minlength=num_labels), rule)


def background_of(border: torch.Tensor, size: torch.Tensor, rule: str = "border") -> torch.Tensor:
    """(K,) bool: which of K clusters with `border` frame cells and `size` cells in all (of one
    image, or summed over a collection) are background.

    border: the one cluster covering most frame cells (ties: the larger overall).
    frame:  also every cluster whose cells lie on the frame at least as often as the grid's cells
            do (a cluster spread evenly over the image would; an object inside the frame does not),
            so that several scene regions (sky, ground) can be background together and a small
            object can be a cluster of its own; one cluster always stays foreground when there are
            two or more: of the others, the one least on the frame.
    """
    if rule not in BACKGROUND_RULES:
        raise ValueError(f"background rule {rule!r}: use one of {', '.join(BACKGROUND_RULES)}")
    background = torch.zeros(len(size), dtype=torch.bool, device=size.device)
    main = int(torch.argmax(border * (size.sum() + 1) + size))
    background[main] = True
    if rule == "frame":
        present = size > 0
        background |= present & (border * size.sum() >= border.sum() * size)  # border/size >= frame share
        if background[present].all() and int(present.sum()) > 1:
            share = torch.where(present, border / size.clamp_min(1), torch.inf)
            share[main] = torch.inf
            background[torch.argmin(share)] = False
    return background


def relabel_background_first(labels: torch.Tensor, rule: str = "border") -> torch.Tensor:
    """Contiguous labels: 0 = the background clusters (`background_clusters` by `rule`), then
    1, 2, ... the others by decreasing size.

    Works for any K and any label values (empty clusters vanish), so the output of every mode and
    loss has the same meaning.
    """
    values, inverse = torch.unique(labels, return_inverse=True)
    k = len(values)
    size = torch.bincount(inverse.flatten(), minlength=k)
    background = background_clusters(inverse, k, rule)
    rest = [int(i) for i in torch.argsort(size, descending=True, stable=True) if not background[i]]
    order = torch.zeros(k, dtype=torch.long)
    for new, old in enumerate(rest, start=1):
        order[old] = new
    return order[inverse]


def largest_component(mask: torch.Tensor) -> torch.Tensor:
    """Keep only the largest 4-connected component of a boolean mask (empty stays empty)."""
    components, n = ndimage.label(mask.cpu().numpy())
    if n <= 1:
        return mask
    sizes = np.bincount(components.ravel())[1:]
    return torch.from_numpy(components == (1 + int(np.argmax(sizes)))).to(mask.device)


def upsample_labels(labels: torch.Tensor, size: tuple[int, int], mode: str = "nearest") -> torch.Tensor:
    """An (h, w) label map at the image size (H, W). nearest: each pixel takes its patch's label
    (edges follow the patch grid). bilinear: each label's indicator is interpolated between patch
    centres and every pixel takes the label with the largest value, so edges run between the
    centres instead of in stair steps; one label at a time, to keep memory at two (H, W) maps."""
    if mode == "nearest":
        return torch.from_numpy(nearest_upsample(labels.cpu().numpy(), size)).to(labels.device)
    if mode != "bilinear":
        raise ValueError(f"upsampling mode {mode!r}: use nearest or bilinear")
    best = torch.full(size, -1.0)
    out = torch.zeros(size, dtype=torch.long)
    for value in labels.unique().tolist():
        score = F.interpolate((labels == value)[None, None].float(), size=size, mode="bilinear",
                              align_corners=False)[0, 0]
        take = score > best
        best = torch.where(take, score, best)
        out[take] = value
    return out


def nearest_upsample(grid: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An (h, w) array at (H, W), each pixel taking its patch's value: a gather, rows then columns,
    in NumPy (one pass, no thread pool, no float copy)."""
    rows, cols = nearest_rows(grid.shape[0], size[0]).numpy(), nearest_rows(grid.shape[1], size[1]).numpy()
    return grid[rows][:, cols]


def to_size(labels: torch.Tensor, mask: torch.Tensor, box: torch.Tensor | None, size: tuple[int, int]):
    """A result computed on a downscaled image (labels and mask (h, w), box in its pixel edges) in the
    coordinates of the image at ``size`` (H, W): labels and mask upsampled nearest, the box scaled."""
    (h, w), (H, W) = labels.shape, size
    labels = torch.from_numpy(nearest_upsample(labels.numpy(), size))
    mask = torch.from_numpy(nearest_upsample(mask.numpy(), size))
    if box is not None:
        box = box * torch.tensor([W / w, H / h, W / w, H / h], dtype=box.dtype)
    return labels, mask, box


def nearest_foreground(labels: np.ndarray) -> np.ndarray:
    """For every pixel of an (H, W) label map with some label > 0, the label of the nearest
    (Euclidean) pixel whose label is > 0 (itself where it is > 0)."""
    _, (rows, cols) = ndimage.distance_transform_edt(labels == 0, return_indices=True)
    return labels[rows, cols]


def labels_within(labels: torch.Tensor, mask: torch.Tensor, mode: str = "nearest") -> torch.Tensor:
    """The (h, w) patch ``labels`` upsampled with ``mode`` to a refined foreground mask's size (H, W)
    and made to agree with it: 0 outside the mask; inside, each pixel keeps its label, or takes the
    label of the nearest foreground patch where the coarse map called it background (label 1 if
    there is none). So the saved label map, its overlay and evaluate.py's re-scoring show the mask
    that was scored. The nearest foreground is found on the patch grid, not among the pixels."""
    size = tuple(mask.shape)
    if not (labels > 0).any():
        return mask.long()
    nearest = nearest_foreground(labels.cpu().numpy())
    if mode == "nearest":  # the nearest foreground of a foreground patch is itself: one full-size map,
        # gathered and masked in bytes where the labels fit (they are < K), a third of the int64 time
        full = nearest_upsample(nearest.astype(np.uint8) if nearest.max() < 256 else nearest, size)
        full *= mask.cpu().numpy()
        # NumPy widens it back: torch's own uint8 -> int64 copy took 3-10x longer here
        return torch.from_numpy(full.astype(nearest.dtype, copy=False)).to(labels.device)
    nearest = torch.from_numpy(nearest).to(labels)
    full = upsample_labels(labels, size, mode)
    return torch.where(full > 0, full, upsample_labels(nearest, size, mode)) * mask


def grid_coverage(foreground: torch.Tensor, size: tuple[int, int], work: tuple[int, int]) -> np.ndarray:
    """The share of each pixel of a (work_h, work_w) image covered by the foreground of an (h, w)
    grid upsampled ("nearest") to ``size`` (H, W), i.e. that mask area-averaged to ``work``: a
    separable product of two small matrices, without the full-size mask. float32 in [0, 1]."""
    def weights(n_grid: int, n_full: int, n_work: int) -> np.ndarray:
        # Grid cell g covers full pixels [start_g, end_g); working pixel i covers [i, i + 1) * n_full / n_work.
        start = np.searchsorted(nearest_rows(n_grid, n_full).numpy(), np.arange(n_grid))
        end = np.append(start[1:], n_full)
        edges = np.arange(n_work + 1) * (n_full / n_work)
        overlap = np.minimum(edges[1:, None], end[None]) - np.maximum(edges[:-1, None], start[None])
        return np.clip(overlap, 0, None) * (n_work / n_full)

    share = weights(foreground.shape[0], size[0], work[0]) @ foreground.cpu().numpy().astype(np.float64) \
        @ weights(foreground.shape[1], size[1], work[1]).T
    return share.clip(0, 1).astype(np.float32)


def nearest_rows(n_in: int, n_out: int) -> torch.Tensor:
    """For each of n_out pixel rows, the grid row `upsample_labels(..., "nearest")` takes it from."""
    index = torch.arange(n_in, dtype=torch.float32)[None, None, :, None]
    return F.interpolate(index, size=(n_out, 1), mode="nearest")[0, 0, :, 0].long()


def grid_box(labels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor | None:
    """`mask_to_box` of the foreground (labels > 0) of an (h, w) grid upsampled ("nearest") to
    ``size`` (H, W) >= (h, w), computed on the grid: components are those of the grid (4-connected
    cells stay connected when each becomes a block of pixels), weighed by their pixel areas, and the
    box's edges are the pixel edges of its outermost cells. Equal to the full-size computation,
    without one pass over the pixels."""
    rows, cols = nearest_rows(labels.shape[0], size[0]), nearest_rows(labels.shape[1], size[1])
    components, n = ndimage.label((labels > 0).cpu().numpy())
    if n == 0:
        return None
    area = np.outer(np.bincount(rows.numpy(), minlength=labels.shape[0]), np.bincount(cols.numpy(), minlength=labels.shape[1]))
    sizes = np.bincount(components.ravel(), weights=area.ravel(), minlength=n + 1)[1:]
    ys, xs = np.nonzero(components == 1 + int(np.argmax(sizes)))
    edges = [torch.searchsorted(cols, int(xs.min())), torch.searchsorted(rows, int(ys.min())),
             torch.searchsorted(cols, int(xs.max()), right=True), torch.searchsorted(rows, int(ys.max()), right=True)]
    return torch.stack(edges).float()


def mask_to_box(mask: torch.Tensor) -> torch.Tensor | None:
    """Box (x0, y0, x1, y1) of the largest component of a boolean mask, in pixel edges
    (x1, y1 exclusive), or None when the mask is empty."""
    mask = largest_component(mask)
    ys, xs = torch.nonzero(mask, as_tuple=True)
    if len(xs) == 0:
        return None
    return torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float()
