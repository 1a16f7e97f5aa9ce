"""Tests of deepcut/pipeline.py: loading (Loaded), feature extraction (Extractor) and per-image processing (Segmenter)."""
import numpy as np
import pytest
import torch
from PIL import Image

from deepcut.datasets import Folder, Sample
from deepcut.pipeline import Extractor, Loaded, Segmenter
from deepcut.postprocess import Postprocess
from helpers import TINY, mask


def test_process_isolates_the_failing_image():
    """A method failing on one image of a batch (e.g. a NaN loss raising) fails that image only;
    a method putting every patch in one cluster gives a degenerate row, not an error."""
    def extractor(tensors):
        return [(t.flatten()[:16].reshape(16, 1).repeat(1, 4), (4, 4)) for t in tensors]

    def method(features, grid, *, seed=0):
        if features[0, 0] == 1:
            raise FloatingPointError("non-finite loss")
        if features[0, 0] == 2:
            return torch.zeros(grid, dtype=torch.long)
        return (torch.arange(16).reshape(grid) % 2)

    segmenter = Segmenter(extractor, method, Postprocess(), seed=0)
    batch = []
    for i, value in enumerate([0.5, 1, 2]):
        image = Image.new("RGB", (16, 16))
        sample = Sample(f"s{i}", "", image, np.ones((16, 16), bool))
        batch.append((sample, torch.full((3, 16, 16), float(value)), None, None))
    batch.append(("s3", None, "DatasetError: empty file", None))
    rows = {row["id"]: (row, extras) for row, extras in segmenter.process(batch)}
    assert rows["s3"][0]["error"].startswith("DatasetError") and rows["s3"][1] == ()
    assert rows["s1"][0]["error"] == "FloatingPointError: non-finite loss"
    assert rows["s2"][0]["degenerate"] is True and rows["s2"][0]["iou"] == 0.0
    assert rows["s0"][0]["degenerate"] is False and "error" not in rows["s0"][0]


def test_huge_image_is_downscaled_before_processing(tmp_path):
    """A 10000x10000 photo decodes (PIL's bomb limit is ~179 Mpx) and is bounded to max_pixels
    before anything full-size (labels, overlay, metrics) is computed."""
    (tmp_path / "images").mkdir()
    Image.new("RGB", (10000, 10000), (200, 30, 60)).save(tmp_path / "images" / "huge.png")
    mask(tmp_path / "masks" / "huge.png", (10000, 10000))
    extractor = Extractor(**TINY, device="cpu")
    with pytest.warns(Image.DecompressionBombWarning):  # PIL warns above ~89 Mpx, raises above ~179 Mpx
        sample, tensor, error, note = Loaded(Folder(root=tmp_path), [0], extractor.preprocess, 4096 * 4096)[0]
    assert error is None and note.startswith("downscaled from 10000x10000")
    assert sample.image.size == sample.mask.shape[::-1] == (4096, 4096)
    assert tensor.shape == (3, 64, 64)


def test_tf32_is_not_left_on_for_later_extractors():
    torch.backends.cuda.matmul.allow_tf32 = False
    image = [Extractor(**TINY, device="cpu").preprocess(Image.new("RGB", (64, 48)))]
    Extractor(**{**TINY, "precision": "tf32"}, device="cpu")(image)
    assert torch.backends.cuda.matmul.allow_tf32 is False


def test_fewer_parts_than_asked_are_counted_in_the_row_and_the_summary():
    """Issue 27, item 16: parts mode returned 2 parts of K = 4 without a word."""
    from deepcut.methods.deepcut import DeepCut
    from deepcut.results import summarize_run

    assert DeepCut(mode="parts", k=4).n_parts == 4
    assert DeepCut(mode="parts", k=4, split_background=True, background_k=3).n_parts == 6
    assert DeepCut(mode="parts", loss="cc", k=10).n_parts is None and DeepCut(k=4).n_parts is None

    class FourParts:  # asks for 4 parts; gives 2 on image 0 and 4 on image 1
        n_parts = 4

        def __call__(self, features, grid, *, seed=0):
            parts = 2 if features[0, 0] < 1 else 4
            return torch.arange(16).reshape(grid) % (parts + 1)

    def extractor(tensors):
        return [(t.flatten()[:16].reshape(16, 1).repeat(1, 4), (4, 4)) for t in tensors]

    segmenter = Segmenter(extractor, FourParts(), Postprocess(bilateral=False), seed=0)
    batch = [(Sample(f"s{i}", "", Image.new("RGB", (16, 16)), None), torch.full((3, 16, 16), float(i)), None, None)
             for i in range(2)]
    rows = [row for row, _ in segmenter.process(batch)]
    assert [r["missing_parts"] for r in rows] == [2, 0]
    assert summarize_run(rows)["n_fewer_parts"] == 1
    assert "n_fewer_parts" not in summarize_run([{"id": "a", "n_labels": 3}])  # not a parts run
