"""Tests of deepcut/results.py: results.csv written, resumed after damage, and read back."""
import numpy as np
from PIL import Image
from deepcut.results import ResultsWriter, read_results, read_rows
from helpers import no_temporaries


def test_torn_last_line_is_dropped_and_kept_rows_are_rewritten_atomically(tmp_path):
    w = ResultsWriter(tmp_path)
    w.add({"id": "a", "iou": 0.1 + 0.2, "corloc": True})
    w.add({"id": "b", "error": "DatasetError: empty file"})
    w.add({"id": "c", "iou": 1 / 3, "kp_gt": "3", "kp_pred": "1"})
    w.close()
    with open(tmp_path / "results.csv", "a") as f:
        f.write("d,,,False,0.5,0.")  # killed mid-line
    (tmp_path / "labels" / ".d.png.123.tmp").write_bytes(b"half")
    w = ResultsWriter(tmp_path)
    try:
        assert w.done == {"a", "c"}  # b failed: retried
        rows = read_rows(tmp_path / "results.csv")
        assert rows == [{"id": "a", "iou": 0.1 + 0.2, "corloc": True}, {"id": "c", "iou": 1 / 3, "kp_gt": "3", "kp_pred": "1"}]
        assert read_results(tmp_path / "results.csv")["id"].tolist() == ["a", "c"]
        no_temporaries(tmp_path)
    finally:
        w.close()


def test_damaged_cell_on_resume_is_recomputed_not_a_crash(tmp_path):
    w = ResultsWriter(tmp_path)
    w.add({"id": "a", "iou": 0.5})
    w.add({"id": "b", "iou": 0.25})
    w.close()
    text = (tmp_path / "results.csv").read_text().replace("0.25", "0.2x5")
    (tmp_path / "results.csv").write_text(text)
    w = ResultsWriter(tmp_path)
    assert w.done == {"a"} and [r["id"] for r in read_rows(tmp_path / "results.csv")] == ["a"]
    w.close()


def test_label_maps_are_palette_pngs_whose_values_are_the_labels(tmp_path):
    """Issue 27, item 16: a label PNG looked black in a viewer (values 0..K as grey); as a palette
    PNG it shows each label in its overlay colour, and np.asarray still reads the labels."""
    from deepcut.results import label_png
    from deepcut.visualize import label_colors
    labels = np.arange(12, dtype=np.int64).repeat(3).reshape(6, 6)
    label_png(labels).save(tmp_path / "a.png")
    png = Image.open(tmp_path / "a.png")
    assert png.mode == "P" and np.array_equal(np.asarray(png), labels)
    assert np.array_equal(np.asarray(png.convert("RGB"))[0, 3], label_colors(11)[1])  # label 1 as overlay draws it
    label_png(labels * 100).save(tmp_path / "b.png")  # beyond 255 labels: 16-bit values
    assert np.array_equal(np.asarray(Image.open(tmp_path / "b.png")), labels * 100)
