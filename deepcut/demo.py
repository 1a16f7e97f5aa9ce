"""A local web demo: `python -m deepcut.demo [--port N] [--host H] [--backbone NAME]`.

Upload a photo (or pick one of the bundled scikit-image photos), choose the method, loss, K, mode,
the bilateral refinement and how many objects (instances) to propose; the page shows the overlay
with the box (or each instance tinted and boxed in its colour), the label map with its
legend, the soft-assignment maps (DeepCut) or the eigenvector (TokenCut, DSM), one patch's
affinity, the box and the time taken. "Parts across photos" takes several photos as one collection
(experiment=cub_parts) and tints each part in one colour in every photo. Needs the `[demo]` extra (gradio); runs offline on the
packaged backbone, and nothing is sent anywhere (gradio's analytics and Hugging Face calls are
switched off before gradio is imported). Segmenters are cached per settings, so only the first
request with new settings loads a model.

Uploads are read by `read_photo`, never by gradio: a file that is not an image, a huge one, or a
broken one gets a one-paragraph message on the page instead of a stack trace; grey, RGBA, palette
and 16-bit photos are converted to RGB and the page says so.
"""
from __future__ import annotations

import argparse
import functools
import logging
import os
import threading
import time
from pathlib import Path

from PIL import Image

from deepcut import visualize
from deepcut.config import compose_config
from deepcut.datasets import Demo, DatasetError, load_image
from deepcut.errors import one_paragraph
from deepcut.losses import LOSSES
from deepcut.methods import method_names
from deepcut.methods.deepcut import MODES
MAX_PIXELS = 50_000_000             # larger uploads are refused (decoding alone would take GBs)
MAX_FILE_SIZE = "50mb"
MIN_SIDE = 14                       # one ViT patch
log = logging.getLogger("deepcut.demo")


@functools.lru_cache
def method_choices() -> list[str]:
    """The registered methods (deepcut.registry) that run on their configs' own settings, DeepCut
    first: a new method module shows up here (`head` needs a checkpoint, so it does not)."""
    from deepcut.registry import method_entry
    ready = [name for name in method_names() if not method_entry(name).check(compose_config(name))]
    return sorted(ready, key=lambda name: (name != "deepcut", name))


@functools.lru_cache
def takes_k(method: str) -> bool:
    """Whether K sets a method's own parameter (method.k, e.g. k-means); DeepCut's K is loss.k."""
    return method != "deepcut" and "k" in compose_config(method).method


class PhotoError(ValueError):
    """An upload the demo cannot use; the message is shown on the page."""


def read_photo(path) -> tuple[Image.Image, list[str]]:
    """An uploaded file -> (RGB image, notes on conversions made). PhotoError says what is wrong:
    not an image, too large, too small or broken. The size is checked from the header, before
    anything is decoded."""
    name = Path(path).name
    try:
        with Image.open(path) as probe:
            (width, height), mode = probe.size, probe.mode
    except Image.DecompressionBombError:
        raise PhotoError(f"{name} is too large to open safely; the demo takes photos of up to "
                         f"{MAX_PIXELS / 1e6:.0f} megapixels") from None
    except (OSError, SyntaxError, ValueError):
        raise PhotoError(f"{name} is not an image that can be read (PNG, JPEG, WebP, TIFF, BMP, GIF, ...); "
                         "upload a photo") from None
    if width * height > MAX_PIXELS:
        raise PhotoError(f"{name} is {width} x {height} = {width * height / 1e6:.0f} megapixels; the demo takes "
                         f"up to {MAX_PIXELS / 1e6:.0f} megapixels: shrink it first")
    if min(width, height) < MIN_SIDE:
        raise PhotoError(f"{name} is {width} x {height} pixels; each side needs at least {MIN_SIDE} pixels")
    try:
        image = load_image(path)
    except DatasetError as err:
        raise PhotoError(f"{name} could not be decoded ({one_paragraph(err, 300)}); is the file complete?") from None
    notes = []
    if mode in ("L", "LA", "1", "I", "I;16", "I;16B", "I;16L", "F"):
        notes.append(f"a grey photo ({mode}): its grey values are used for all three colour channels")
    elif mode != "RGB":
        notes.append(f"converted from {mode} to RGB" + (" (transparency dropped)" if mode in ("RGBA", "PA", "P") else ""))
    return image, notes


def settings(method: str, loss: str, k: int, mode: str, bilateral: bool, instances: int = 0) -> tuple[str, tuple, tuple]:
    """(method, config-group choices, overrides) for create_segmenter. Loss, K and mode only shape
    DeepCut (K also a peer's own k), so peers with different values share one cached segmenter.
    (optimizer.combine=auto picks the restarts' vote or the lowest-loss restart by itself.)"""
    if method not in method_choices():
        raise PhotoError(f"method {method!r} is not one of {', '.join(method_choices())}")
    overrides = [f"postprocess.bilateral={str(bool(bilateral)).lower()}"]
    if instances:
        overrides.append(f"postprocess.instances={int(instances)}")
    choices: tuple = ()
    if method == "deepcut":
        if loss not in LOSSES or mode not in MODES:
            raise PhotoError(f"loss must be one of {', '.join(LOSSES)} and mode one of {', '.join(MODES)}")
        choices = (("loss", loss), ("mode", mode))
        overrides.append(f"loss.k={int(k)}")
    elif takes_k(method):
        overrides.append(f"method.k={int(k)}")
    return method, choices, tuple(overrides)


class Segmenters:
    """create_segmenter results, the `size` most recently used kept, one lock for building them."""

    def __init__(self, backbone: str | None = None, size: int = 4):
        self.backbone = backbone
        self._lock = threading.Lock()
        self.get = functools.lru_cache(maxsize=size)(self._create)

    def _create(self, method: str, choices: tuple, overrides: tuple):
        import deepcut

        extra = {"backbone": self.backbone} if self.backbone else {}
        return deepcut.create_segmenter(method, overrides=list(overrides), **dict(choices), **extra)

    def __call__(self, method: str, choices: tuple, overrides: tuple):
        with self._lock:
            return self.get(method, choices, overrides)


def segment(segmenters: Segmenters, path, method: str, loss: str, k: int, mode: str, bilateral: bool,
            instances: int = 0):
    """One request: (overlay, label map, [(map, caption)], status markdown). Every failure becomes
    a message in the status; nothing raises."""
    if not path:
        return None, None, [], "**Upload a photo** or pick one of the examples first."
    try:
        image, notes = read_photo(path)
        key = settings(method, loss, k, mode, bilateral, instances)
        start = time.perf_counter()
        segmenter = segmenters(*key)
        loaded = time.perf_counter() - start
        out = segmenter(image, ids="demo")
    except PhotoError as err:
        return None, None, [], f"**Cannot use this file.** {err}"
    except Exception as err:  # noqa: BLE001 - shown on the page; the server log has the traceback
        log.exception("segmentation failed")
        return None, None, [], f"**Segmentation failed:** {type(err).__name__}: {one_paragraph(err, 400)}"
    soft = None if out.soft is None else out.soft[:out.n_clusters]  # channels past the labels: unused clusters
    pictures = visualize.panels(image, out.labels, out.box, soft=soft, eigenvector=out.eigenvector,
                                features=out.features, grid=out.grid, patch_labels=out.patch_labels)
    maps = [(pictures[f"soft_{i}"], f"S_{i}: soft assignment to {'background' if i == 0 else f'cluster {i}'}")
            for i in range(len(soft) if soft is not None else 0)]
    if "eigenvector" in pictures:
        maps.append((pictures["eigenvector"], f"the eigenvector {method} cuts (red > 0 > blue)"))
    maps.append((pictures["affinity"], "cosine similarity of the outlined patch to every patch"))
    box = "none (empty foreground)" if out.box is None else ", ".join(f"{float(v):.0f}" for v in out.box)
    lines = [f"**Time** {out.time_s:.2f} s" + (f" (+ {loaded:.1f} s loading the model)" if loaded > 0.05 else ""),
             f"**Box** x0, y0, x1, y1 = {box}",
             f"**Clusters** {out.n_clusters} on a {out.grid[0]} x {out.grid[1]} patch grid; "
             f"foreground {100 * float(out.mask.float().mean()):.0f} % of {image.width} x {image.height} px"]
    if out.instances is not None:
        pictures["overlay"] = visualize.instance_overlay(image, out.instances)
        boxes = "; ".join(", ".join(f"{v:.0f}" for v in b) for b in out.instances.boxes.tolist())
        lines.append(f"**Instances** {len(out.instances)} (each foreground cluster's connected parts over "
                     f"{100 * segmenter.post.instance_min_area:.0f} % of the photo, largest first)"
                     + (f": boxes {boxes}" if boxes else ""))
    if method != "deepcut":
        lines.append("Loss and mode shape DeepCut only" + (f" (K sets {method}'s k)." if takes_k(method) else "."))
    lines += [f"Note: {n}." for n in notes]
    return pictures["overlay"], pictures["labels"], maps, "  \n".join(lines)


def collection_parts(segmenters: Segmenters, paths, k: int):
    """Several photos as one collection with the parts recipe (experiment=cub_parts, K parts): (the
    photos in a grid, each part tinted in its colour, the same colour the same part in every photo;
    status markdown). Every failure becomes a message in the status; nothing raises."""
    paths = [p if isinstance(p, (str, os.PathLike)) else (p or {}).get("path") for p in (paths or [])]
    paths = [p for p in paths if p]
    if len(paths) < 2:
        return None, "**Upload at least two photos** of objects of one kind (birds, cats, cars, ...)."
    try:
        loaded = [read_photo(p) for p in paths]
        images = [image for image, _ in loaded]
        start = time.perf_counter()
        segmenter = segmenters("deepcut", (), ("experiment=cub_parts", f"loss.k={int(k)}"))
        out = segmenter(images, ids=[f"photo_{i}" for i in range(len(images))])
    except PhotoError as err:
        return None, f"**Cannot use this file.** {err}"
    except Exception as err:  # noqa: BLE001 - shown on the page; the server log has the traceback
        log.exception("collection parts failed")
        return None, f"**Segmentation failed:** {type(err).__name__}: {one_paragraph(err, 400)}"
    found = sorted({int(v) for o in out for v in o.labels.unique().tolist()} - {0})
    lines = [f"**Time** {time.perf_counter() - start:.1f} s for {len(images)} photos (one GNN for the collection)",
             f"**Parts** {len(found)} of K = {int(k)}; the same colour is the same part in every photo"]
    lines += [f"Note ({Path(p).name}): {n}." for p, (_, notes) in zip(paths, loaded) for n in notes]
    return visualize.parts_grid(images, [o.labels for o in out], columns=min(4, len(images))), "  \n".join(lines)


def no_phoning_home() -> None:
    """Switch off gradio's analytics and version check and any Hugging Face Hub call."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    os.environ["GRADIO_SERVER_MODE_ENABLED"] = "False"


def build(backbone: str | None = None):
    """The gradio Blocks app (gradio is imported here: it is the `[demo]` extra)."""
    no_phoning_home()
    try:
        import gradio as gr
    except ImportError:
        raise SystemExit('the demo needs gradio: pip install -c constraints.txt -e ".[demo]"') from None
    default_k = {name: int(compose_config("deepcut", [f"loss={name}"]).loss.k) for name in LOSSES}  # N-cut's K, CC's K_max
    segmenters = Segmenters(backbone)
    photos = [str(e.image) for e in Demo().entries]

    with gr.Blocks(title="DeepCut demo", analytics_enabled=False) as app:
        gr.Markdown("## DeepCut: unsupervised segmentation by GNN clustering\n"
                    "Frozen ViT features become a graph; a small GNN trained on this one photo clusters its "
                    "patches. Everything runs here, offline.")
        with gr.Row():
            with gr.Column(scale=1):
                photo = gr.Image(label="Photo", type="filepath", sources=["upload"], image_mode=None,
                                 elem_id="photo", height=320)
                gr.Examples(photos, inputs=photo, label="Bundled photos (scikit-image)")
                method = gr.Dropdown(method_choices(), value="deepcut", label="Method", elem_id="method")
                loss = gr.Radio(list(LOSSES), value="ncut", label="Loss (DeepCut)", elem_id="loss")
                k = gr.Slider(2, 10, value=default_k["ncut"], step=1, label="K (N-cut: clusters, CC: at most; k-means)",
                              elem_id="k")
                mode = gr.Radio(list(MODES), value="single", label="Mode (parts: K parts inside the foreground)",
                                elem_id="mode")
                bilateral = gr.Checkbox(bool(compose_config("deepcut").postprocess.bilateral), elem_id="bilateral",
                                        label="Refine the mask with the bilateral solver")
                instances = gr.Slider(0, 10, value=int(compose_config("deepcut").postprocess.instances), step=1,
                                      label="Instances: the most objects to propose (0: one foreground)",
                                      elem_id="instances")
                run = gr.Button("Segment", variant="primary", elem_id="run")
            with gr.Column(scale=2):
                overlay = gr.Image(label="Overlay and box", type="pil", format="png", interactive=False,
                                   elem_id="overlay")
                status = gr.Markdown(elem_id="status")
                labels = gr.Image(label="Clusters", type="pil", format="png", interactive=False, elem_id="labels",
                                  buttons=[])  # no toolbar over the legend
                maps = gr.Gallery(label="Soft assignment S / eigenvector, and one patch's affinity", columns=3,
                                  height=300, format="png", elem_id="maps")
        with gr.Accordion("Parts across photos: one collection, the same part in the same colour", open=False):
            with gr.Row():
                with gr.Column(scale=1):
                    uploads = gr.File(label="Photos of one kind of object (two or more)", file_count="multiple",
                                      file_types=["image"], elem_id="collection")
                    n_parts = gr.Slider(2, 8, value=4, step=1, label="Parts (K)", elem_id="n_parts")
                    run_parts = gr.Button("Find parts", elem_id="run_parts")
                with gr.Column(scale=2):
                    grid = gr.Image(label="Parts", type="pil", format="png", interactive=False, elem_id="parts")
                    parts_status = gr.Markdown(elem_id="parts_status")
            run_parts.click(lambda files, n: collection_parts(segmenters, files, n), [uploads, n_parts],
                            [grid, parts_status], preprocess=False, api_visibility="private")
        loss.change(lambda name: default_k[name], loss, k)
        method.change(lambda name: (gr.update(interactive=name == "deepcut"), gr.update(interactive=name == "deepcut"),
                                    gr.update(interactive=name == "deepcut" or takes_k(name))), method, [loss, mode, k])
        # preprocess=False: the upload reaches read_photo as a file path, so a bad file gets our message.
        run.click(lambda payload, *rest: segment(segmenters, (payload or {}).get("path"), *rest),
                  [photo, method, loss, k, mode, bilateral, instances], [overlay, labels, maps, status],
                  preprocess=False, api_visibility="private")
    app.photo_folder = str(Path(photos[0]).parent)
    return app


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m deepcut.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=7860, help="port to serve on (default 7860)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--backbone", default=None, help="a configs/backbone option (default: the configs' default)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # gradio's own requests to this server
    app = build(args.backbone)
    app.queue(default_concurrency_limit=1)  # one segmentation at a time: they share the CPU
    app.launch(server_name=args.host, server_port=args.port, share=False, ssr_mode=False, mcp_server=False,
               enable_monitoring=False, show_error=False, max_file_size=MAX_FILE_SIZE,
               allowed_paths=[app.photo_folder], footer_links=[])


if __name__ == "__main__":
    main()
