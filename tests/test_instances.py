"""Instances (issue 26): proposals from a label map, their COCO form, and COCOeval's AP/AR on known answers."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from deepcut import metrics
from deepcut.datasets import Sample
from deepcut.instances import coco_id, detections, proposals, rle, truth
from deepcut.postprocess import Postprocess
from deepcut.errors import ConfigError


def three_objects(h=60, w=80):
    """A label map with three separated objects: two of label 1 (one cluster, two places), one of label 2."""
    labels = torch.zeros(h, w, dtype=torch.long)
    labels[5:25, 5:35] = 1      # 600 px
    labels[40:55, 50:70] = 1    # 300 px
    labels[30:50, 5:25] = 2     # 400 px
    return labels


def test_every_foreground_component_is_a_proposal_largest_first():
    found = proposals(three_objects(), most=5, min_area=0.0)
    assert len(found) == 3
    assert found.boxes.tolist() == [[5, 5, 35, 25], [5, 30, 25, 50], [50, 40, 70, 55]]  # x0, y0, x1, y1 edges
    assert np.allclose(found.scores.numpy(), [600 / 4800, 400 / 4800, 300 / 4800])
    assert [int((found.map == i).sum()) for i in (1, 2, 3)] == [600, 400, 300]
    assert int((found.map > 0).sum()) == 1300  # the background is no proposal


def test_most_and_min_area_limit_the_proposals():
    assert len(proposals(three_objects(), most=2, min_area=0.0)) == 2
    kept = proposals(three_objects(), most=5, min_area=350 / 4800)  # the 300 px object is too small
    assert kept.boxes.tolist() == [[5, 5, 35, 25], [5, 30, 25, 50]]
    assert len(proposals(torch.zeros(10, 10, dtype=torch.long), most=3)) == 0


def test_postprocess_makes_proposals_at_image_size_and_checks_its_settings():
    grid = torch.zeros(6, 8, dtype=torch.long)
    grid[1:3, 1:3] = 1
    grid[3:5, 5:7] = 1
    post = Postprocess(instances=3, instance_min_area=0.0)
    full, _, _ = post(grid, Image.new("RGB", (80, 60)))
    found = post.propose(full)
    assert found.boxes.tolist() == [[10, 10, 30, 30], [50, 30, 70, 50]]
    assert Postprocess().propose(full) is None  # instances=0: the single-object output only
    with pytest.raises(ConfigError, match="postprocess.instances=-1"):
        Postprocess(instances=-1)
    with pytest.raises(ConfigError, match="postprocess.instance_min_area=1.5"):
        Postprocess(instances=2, instance_min_area=1.5)


def record(found, objects, size=(60, 80)):
    sample = Sample("x", "", Image.new("RGB", size[::-1]), instances=objects)
    return {"size": list(size), "detections": detections(found), "truth": truth(sample)}


def objects_of(labels, crowd=()):
    found = proposals(labels, most=10, min_area=0.0)
    return [{"box": b.numpy(), "mask": (found.map == i).numpy(), "iscrowd": i in crowd}
            for i, b in enumerate(found.boxes, start=1)]


def test_perfect_proposals_score_ap_1_through_pycocotools():
    labels = three_objects()
    s = metrics.coco_scores([record(proposals(labels, most=10, min_area=0.0), objects_of(labels))])
    for k in ("ap", "ap50", "ar10", "ar100"):
        assert s[f"{k}_box"] == pytest.approx(1.0) and s[f"{k}_mask"] == pytest.approx(1.0), k
    assert s["ar1_box"] == pytest.approx(1 / 3)  # one detection per image: 1 of its 3 objects


def test_missing_objects_cost_recall_and_nothing_found_scores_zero():
    labels = three_objects()
    one = proposals(labels, most=1, min_area=0.0)  # only the largest of the three
    s = metrics.coco_scores([record(one, objects_of(labels))])
    assert s["ar10_box"] == pytest.approx(1 / 3) and s["ap50_box"] == pytest.approx(1 / 3, abs=0.02)
    none = proposals(torch.zeros_like(labels), most=3)
    assert metrics.coco_scores([record(none, objects_of(labels))])["ap50_mask"] == 0.0
    assert metrics.coco_scores([{"size": [60, 80], "detections": [], "truth": None}]) == {}


def test_a_proposal_on_a_crowd_region_is_no_false_positive():
    labels = three_objects()
    found = proposals(labels, most=10, min_area=0.0)
    crowd = metrics.coco_scores([record(found, objects_of(labels, crowd={2}))])  # the second is a crowd
    assert crowd["ap_box"] == pytest.approx(1.0)


def test_boxes_only_ground_truth_scores_boxes_only():
    labels = three_objects()
    sample = Sample("x", "", Image.new("RGB", (80, 60)), boxes=np.array([[5, 5, 35, 25]], np.float32))
    s = metrics.coco_scores([{"size": [60, 80], "detections": detections(proposals(labels, 10, 0.0)),
                              "truth": truth(sample)}])
    assert s["ar10_box"] == pytest.approx(1.0) and "ap_mask" not in s


def test_rle_round_trips_and_ids_are_stable():
    from pycocotools import mask as coco_mask
    m = three_objects().numpy() > 0
    assert (coco_mask.decode({**rle(m), "counts": rle(m)["counts"].encode()}) == m).all()
    json.dumps(rle(m))
    assert coco_id("000000000139") == 139
    assert coco_id("2008_000123") == coco_id("2008_000123") != coco_id("2008_000124")


@pytest.mark.slow
def test_run_writes_instances_json_that_loadres_reads_and_shards_merge(tmp_path):
    """`postprocess.instances=3` on a COCO layout (method=whole: one proposal per photo): instances.json is COCO results that pycocotools
    loads against the data set's own annotations, the summary holds AP/AR for boxes and masks, and
    evaluate.py re-scores one run and merges two shards to the same numbers."""
    from pycocotools.coco import COCO
    from helpers import REPO, coco, env

    root = coco(tmp_path / "COCO", 2017)
    path = root / "annotations" / "instances_train2017.json"
    data = json.loads(path.read_text())
    for a in data["annotations"]:  # every object with a mask, so that mask AP is defined
        x, y, w, h = a["bbox"]
        a.setdefault("segmentation", [[x, y, x + w, y, x + w, y + h, x, y + h]])
    path.write_text(json.dumps(data))
    def run(out, *extra):
        cmd = [sys.executable, "run.py", f"hydra.run.dir={out}", "backbone=tiny_random", "dataset=coco20k",
               f"dataset.root={root}", "dataset.filenames=null", "postprocess.instances=3", "method=whole", *extra]
        done = subprocess.run(cmd, cwd=REPO, env=env(tmp_path / "cache"), capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads((out / "summary.json").read_text())
    whole = run(tmp_path / "whole")
    for k in ("ap_box", "ap50_box", "ar1_box", "ar10_box", "ar100_box", "ap_mask", "ap50_mask", "ar100_mask"):
        assert 0 <= whole[k] <= 1, k
    results = json.loads((tmp_path / "whole" / "instances.json").read_text())
    assert results and {r["image_id"] for r in results} <= {1, 2}
    assert all(r["category_id"] == 1 and len(r["bbox"]) == 4 and "counts" in r["segmentation"] for r in results)
    gt = COCO(str(root / "annotations" / "instances_train2017.json"))
    assert len(gt.loadRes(str(tmp_path / "whole" / "instances.json")).anns) == len(results)
    assert (tmp_path / "whole" / "instances" / "000000000001.png").exists()

    evaluate = [sys.executable, "evaluate.py"]
    again = subprocess.run([*evaluate, str(tmp_path / "whole")], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    rescored = json.loads((tmp_path / "whole" / "evaluation.json").read_text())
    shards = [tmp_path / "sweep" / str(i) for i in (0, 1)]
    for i, out in enumerate(shards):
        run(out, f"dataset.shard={i}", "dataset.num_shards=2")
    merged = subprocess.run([*evaluate, *map(str, shards)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert merged.returncode == 0, merged.stderr
    merged = json.loads((tmp_path / "sweep" / "merged_evaluation.json").read_text())
    for k in ("ap_box", "ar10_box", "ap_mask"):
        assert rescored[k] == pytest.approx(whole[k]) and merged[k] == pytest.approx(whole[k]), k
    assert len(json.loads((tmp_path / "sweep" / "instances.json").read_text())) == len(results)
