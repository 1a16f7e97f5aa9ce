"""Pictures of a segmentation: label maps with a legend, overlays, soft-assignment heat maps, the
affinity of one patch to all others, and the eigenvector TokenCut / DSM cut.

Pure functions of tensors and PIL images returning PIL images (`figure` returns a matplotlib
Figure for notebooks); colours come from matplotlib's colormaps. Patch-grid maps are coloured
first and then enlarged with nearest-neighbour resampling, so every pixel carries exactly the
colour of its patch's value (the grid stays visible, nothing is invented between patches).

`panels(image, ...)` makes all that apply to one image; run.py's overlays, the notebook and the
demo (deepcut/demo.py) all draw through this module.
"""
from __future__ import annotations

import functools
from typing import Sequence

import matplotlib
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont


BACKGROUND = (0, 0, 0)  # label 0 in label maps; overlays leave the background untinted
BOX = (255, 255, 0)
HEAT_CMAP = "viridis"   # perceptually uniform, lightness increases with the value
SIGNED_CMAP = "RdBu_r"  # diverging around 0: the sign of a similarity or an eigenvector


def label_colors(n_labels: int) -> np.ndarray:
    """(n_labels, 3) uint8: label 0 = BACKGROUND, labels 1.. from matplotlib's categorical tab10
    (tab20 beyond 10 foreground labels, cycled beyond 20)."""
    cmap = matplotlib.colormaps["tab10" if n_labels - 1 <= 10 else "tab20"]
    fg = np.array([cmap(i % cmap.N)[:3] for i in range(max(n_labels - 1, 0))]).reshape(-1, 3)
    return np.concatenate([np.array([BACKGROUND], np.uint8), np.round(fg * 255).astype(np.uint8)])


@functools.lru_cache(maxsize=1)  # built once, not for every label PNG a run saves
def label_palette() -> list[int]:
    """A PNG palette of 256 entries: the colours `overlay` gives labels 0-10 (tab10), then tab20."""
    return np.concatenate([label_colors(11), label_colors(256)[11:]]).ravel().tolist()


def _labels(labels) -> np.ndarray:
    lab = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    if lab.ndim != 2 or lab.size == 0 or lab.min() < 0:
        raise ValueError(f"labels must be a non-empty (H, W) map of labels >= 0, got shape {lab.shape}")
    return lab.astype(np.int64)


def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _fit(image: Image.Image, size: tuple[int, int] | None) -> Image.Image:
    return image if size is None or image.size == tuple(size) else image.resize(tuple(size), Image.NEAREST)


def label_map(labels, size: tuple[int, int] | None = None, legend: bool = True,
              names: Sequence[str] | None = None) -> Image.Image:
    """(H, W) labels -> an RGB picture, one colour per label (`label_colors`), enlarged to `size`
    (w, h) by nearest neighbour. legend: a strip on the right with each present label's colour and
    name (`names[i]`, default "background" for 0 and the number otherwise)."""
    lab = _labels(labels)
    colors = label_colors(int(lab.max()) + 1)
    picture = _fit(Image.fromarray(colors[lab]), size)
    if not legend:
        return picture
    present = np.unique(lab)
    names = [names[i] if names is not None else ("background" if i == 0 else f"cluster {i}") for i in present]
    font_size = max(10, min(picture.height // max(len(present), 1) // 2, picture.height // 12, 24))
    font, pad = _font(font_size), font_size // 2
    width = pad * 4 + font_size + max(int(font.getlength(n)) for n in names)
    out = Image.new("RGB", (picture.width + width, max(picture.height, (font_size + pad) * len(present) + pad)),
                    (255, 255, 255))
    out.paste(picture, (0, 0))
    draw = ImageDraw.Draw(out)
    for row, (label, name) in enumerate(zip(present, names)):
        x, y = picture.width + pad, pad + row * (font_size + pad)
        draw.rectangle([x, y, x + font_size, y + font_size], fill=tuple(int(c) for c in colors[label]),
                       outline=(128, 128, 128))
        draw.text((x + font_size + pad, y), name, fill=(0, 0, 0), font=font)
    return out


def overlay(image: Image.Image, labels, box=None, opacity: float = 0.5, n_labels: int | None = None,
            legend: bool = False, names: Sequence[str] | None = None) -> Image.Image:
    """The RGB image with each non-background label tinted in its `label_colors` colour and outlined
    in it at full strength (labels at the image's size), and the box (x0, y0, x1, y1, pixel edges)
    drawn in yellow. n_labels: the palette's size (default: this map's largest label + 1), shared by
    pictures that compare ids. legend: a key in the top-left corner, each present label's colour and
    name (`names[i - 1]` for label i; default "foreground" for a lone label 1, else "cluster i"), and
    the box's, where it fits."""
    lab = _labels(labels)
    image = image.convert("RGB")
    if lab.shape != (image.height, image.width):
        raise ValueError(f"labels of shape {lab.shape} do not match the image ({image.height}, {image.width})")
    rgb = np.asarray(image, dtype=np.float32)
    colors = label_colors(max(n_labels or 0, int(lab.max()) + 1))
    tint = colors[lab].astype(np.float32)
    alpha = np.where(lab[..., None] > 0, opacity, 0.0)
    alpha[_edges(lab, max(1, min(image.size) // 200))] = 1.0  # the outline: where the eye finds the boundary
    out = Image.fromarray(np.round(rgb * (1 - alpha) + tint * alpha).astype(np.uint8))
    draw = ImageDraw.Draw(out)
    if box is not None:
        x0, y0, x1, y1 = (float(v) for v in box)
        # Pixel edges -> the last pixel inside is x1 - 1 (PIL draws both end points).
        draw.rectangle([x0, y0, x1 - 1, y1 - 1], outline=BOX, width=max(2, image.width // 150))
    if legend:
        present = [int(i) for i in np.unique(lab) if i > 0]
        default = (lambda i: "foreground") if present == [1] else (lambda i: f"cluster {i}")  # noqa: E731
        keys = [(tuple(int(c) for c in colors[i]), names[i - 1] if names else default(i)) for i in present]
        _key(out, keys + ([(BOX, "box")] if box is not None else []))
    return out


def _edges(lab: np.ndarray, width: int) -> np.ndarray:
    """The pixels of each foreground label within ``width`` of another label."""
    from scipy import ndimage

    edge = np.zeros(lab.shape, bool)
    edge[1:] |= lab[1:] != lab[:-1]
    edge[:-1] |= lab[:-1] != lab[1:]
    edge[:, 1:] |= lab[:, 1:] != lab[:, :-1]
    edge[:, :-1] |= lab[:, :-1] != lab[:, 1:]
    if width > 1:
        edge = ndimage.binary_dilation(edge, iterations=width - 1)
    return edge & (lab > 0)


def _key(picture: Image.Image, keys: list[tuple[tuple[int, int, int], str]]) -> None:
    """A legend (colour swatch, name) on a light panel in the top-left corner, drawn in place when
    it fits in a quarter of the picture."""
    if not keys:
        return
    size = max(10, min(picture.height // 24, 24))
    font, pad = _font(size), size // 2
    width = 3 * pad + size + max(int(font.getlength(name)) for _, name in keys)
    height = pad + len(keys) * (size + pad)
    if width > picture.width // 2 or height > picture.height // 2:
        return
    panel = Image.new("RGBA", (width, height), (255, 255, 255, 200))
    draw = ImageDraw.Draw(panel)
    for row, (color, name) in enumerate(keys):
        y = pad + row * (size + pad)
        draw.rectangle([pad, y, pad + size, y + size], fill=color, outline=(64, 64, 64))
        draw.text((2 * pad + size, y), name, fill=(0, 0, 0), font=font)
    picture.paste(panel, (0, 0), panel)


def instance_overlay(image: Image.Image, found, opacity: float = 0.5, legend: bool = False) -> Image.Image:
    """The image with each instance proposal (deepcut.instances.Instances: map at the image's size,
    boxes) tinted and boxed in its own `label_colors` colour, the i-th proposal in colour i."""
    out = overlay(image, found.map, None, opacity, legend=legend, names=[f"object {i}" for i in range(1, len(found) + 1)])
    colors = label_colors(len(found) + 1)
    draw = ImageDraw.Draw(out)
    for i, (x0, y0, x1, y1) in enumerate(found.boxes.tolist(), start=1):
        draw.rectangle([x0, y0, x1 - 1, y1 - 1], outline=tuple(int(c) for c in colors[i]), width=max(2, image.width // 150))
    return out


def heatmap(values, size: tuple[int, int] | None = None, cmap: str = HEAT_CMAP, vmin: float | None = 0.0,
            vmax: float | None = 1.0, image: Image.Image | None = None, opacity: float = 0.6) -> Image.Image:
    """(h, w) values -> their colours in `cmap` over [vmin, vmax] (None: the values' own min or max;
    values outside are clipped), enlarged to `size` (w, h) or to `image`'s size by nearest neighbour.
    With `image`: blended over it with `opacity`."""
    v = np.asarray(values.detach().float().cpu() if isinstance(values, torch.Tensor) else values, np.float64)
    if v.ndim != 2 or v.size == 0:
        raise ValueError(f"a heat map needs an (h, w) array of values, got shape {v.shape}")
    lo = np.nanmin(v) if vmin is None else vmin
    hi = np.nanmax(v) if vmax is None else vmax
    scaled = np.clip((v - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(v)
    colors = np.round(matplotlib.colormaps[cmap](scaled)[..., :3] * 255).astype(np.uint8)
    picture = _fit(Image.fromarray(colors), image.size if image is not None else size)
    return Image.blend(image.convert("RGB"), picture, opacity) if image is not None else picture


def soft_maps(soft, size: tuple[int, int] | None = None, image: Image.Image | None = None) -> list[Image.Image]:
    """(K, h, w) soft assignment S (channel i = label i) -> K heat maps of S_i over [0, 1]."""
    if soft is None or soft.ndim != 3:
        raise ValueError("soft_maps needs a (K, h, w) soft assignment (DeepCut's Segmentation.soft)")
    return [heatmap(s, size, image=image) for s in soft]


def patch_affinity(features: torch.Tensor, grid: tuple[int, int], patch: tuple[int, int]) -> torch.Tensor:
    """Cosine similarity of patch (row, col) to every patch: (N, C) features -> (h, w) in [-1, 1].
    Give the features the method saw (Segmentation.features: centred when backbone.center is on;
    uncentred DINOv2 keys are all alike, cosine > 0.5, and their map is uniformly red)."""
    h, w = grid
    row, col = patch
    if not (0 <= row < h and 0 <= col < w):
        raise ValueError(f"patch {patch} is outside the {h} x {w} patch grid")
    f = torch.nn.functional.normalize(features.detach().float().cpu(), dim=-1)
    return (f @ f[row * w + col]).reshape(h, w)


def affinity_map(features: torch.Tensor, grid: tuple[int, int], patch: tuple[int, int],
                 size: tuple[int, int] | None = None) -> Image.Image:
    """`patch_affinity` in a diverging colormap over [-1, 1] (red: similar, blue: opposite), the
    chosen patch outlined in black."""
    sim = patch_affinity(features, grid, patch)
    picture = heatmap(sim, size, cmap=SIGNED_CMAP, vmin=-1.0, vmax=1.0)
    (h, w), (row, col) = grid, patch
    sx, sy = picture.width / w, picture.height / h
    ImageDraw.Draw(picture).rectangle([col * sx, row * sy, (col + 1) * sx - 1, (row + 1) * sy - 1],
                                      outline=(0, 0, 0), width=max(1, int(min(sx, sy)) // 6))
    return picture


def eigenvector_map(eigenvector, size: tuple[int, int] | None = None) -> Image.Image:
    """The (h, w) vector TokenCut / DSM threshold, in a diverging colormap symmetric about 0
    (the largest |value| at full colour), so its two signs read as the two sides of the cut."""
    v = eigenvector.detach().float().cpu() if isinstance(eigenvector, torch.Tensor) else torch.as_tensor(eigenvector)
    peak = float(v.abs().max()) or 1.0
    return heatmap(v, size, cmap=SIGNED_CMAP, vmin=-peak, vmax=peak)


def foreground_patch(patch_labels) -> tuple[int, int]:
    """A patch to show the affinity of: the foreground patch nearest the foreground's centroid
    (the grid's centre when there is no foreground)."""
    lab = _labels(patch_labels)
    rows, cols = np.nonzero(lab > 0)
    if len(rows) == 0:
        return lab.shape[0] // 2, lab.shape[1] // 2
    i = np.argmin((rows - rows.mean()) ** 2 + (cols - cols.mean()) ** 2)
    return int(rows[i]), int(cols[i])


def panels(image: Image.Image, labels, box=None, *, soft=None, eigenvector=None, features=None, grid=None,
           patch_labels=None, patch: tuple[int, int] | None = None) -> dict[str, Image.Image]:
    """Every picture that applies to one result, all at the image's size except the legend's strip:
    "overlay", "labels" (with legend), "soft_<i>" for each channel of S, "eigenvector", and
    "affinity" (of `patch`, default `foreground_patch(patch_labels)`) when features and grid are
    given. The arguments are a Segmentation's fields of the same names."""
    size = image.size
    out = {"overlay": overlay(image, labels, box), "labels": label_map(labels, size)}
    if soft is not None:
        out.update({f"soft_{i}": m for i, m in enumerate(soft_maps(soft, size))})
    if eigenvector is not None:
        out["eigenvector"] = eigenvector_map(eigenvector, size)
    if features is not None and grid is not None:
        if patch is None:
            patch = foreground_patch(patch_labels) if patch_labels is not None else (grid[0] // 2, grid[1] // 2)
        out["affinity"] = affinity_map(features, grid, patch, size)
    return out


def parts_grid(images: Sequence[Image.Image], labels: Sequence, columns: int = 4, tile: int = 192,
               opacity: float = 0.6) -> Image.Image:
    """Photos of one collection with their parts tinted by part id, one palette for all (the same
    colour is the same part in every photo), as one picture: a grid of `columns`, each photo fitted
    into a tile x tile cell. ``labels``: each photo's (H, W) part labels, 0 = background."""
    maps = [_labels(lab) for lab in labels]
    if len(maps) != len(images) or not maps:
        raise ValueError(f"need one label map per photo, got {len(maps)} for {len(images)}")
    n_labels = max(int(m.max()) for m in maps) + 1
    rows = -(-len(maps) // columns)
    out = Image.new("RGB", (tile * min(columns, len(maps)), tile * rows), (255, 255, 255))
    for i, (image, lab) in enumerate(zip(images, maps)):
        picture = overlay(image, lab, opacity=opacity, n_labels=n_labels)
        picture.thumbnail((tile, tile))
        x, y = (i % columns) * tile + (tile - picture.width) // 2, (i // columns) * tile + (tile - picture.height) // 2
        out.paste(picture, (x, y))
    return out


def figure(pictures: dict[str, Image.Image], columns: int = 4, width: float = 3.2):
    """A matplotlib Figure showing `pictures` in a grid, titled by their keys (for notebooks)."""
    from matplotlib.figure import Figure

    if not pictures:
        raise ValueError("visualize.figure got no pictures: pass a dict of at least one title to PIL image "
                         "(a glob over a directory that holds none gives an empty dict)")
    rows = -(-len(pictures) // columns)
    cols = min(columns, len(pictures))
    first = next(iter(pictures.values()))
    fig = Figure(figsize=(width * cols, width * rows * first.height / first.width + 0.4 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (title, picture) in zip(axes.flat, pictures.items()):
        ax.imshow(picture)
        ax.set_title(title, fontsize=10)
    return fig
