"""Datasets on miniature copies of each official layout, built in tmp_path; plus the real subsets in
../shared/data when present."""
import json
import pickle
import socket
from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image

from deepcut import datasets as D
from deepcut.datasets import DatasetError
from deepcut.datasets.io import _orient, _orient_boxes
from helpers import coco

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"
CONFIGS = sorted((REPO / "configs" / "dataset").glob("*.yaml"))


# ---------------------------------------------------------------- builders


def photo(path: Path, size=(48, 32), seed=0) -> Path:
    """A noisy RGB picture (so JPEG has something to compress) saved as whatever the suffix says."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def mask_file(path: Path, size=(48, 32), mode="L") -> Path:
    """Left half 255, then a column of 128 (foreground: > 127) and one of 127 (background)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    a = np.zeros((h, w), np.uint8)
    a[:, : w // 2] = 255
    a[:, w // 2] = 128
    a[:, w // 2 + 1] = 127
    Image.fromarray(a).convert(mode, dither=Image.Dither.NONE).save(path)  # '1': >= 128 white, as in 'L'
    return path


def expected_mask(size=(48, 32)) -> np.ndarray:
    w, h = size
    m = np.zeros((h, w), bool)
    m[:, : w // 2 + 1] = True  # 255 and 128
    return m


def saliency(root: Path, images: str, masks: str, stems=("b", "a", "c")) -> Path:
    for i, s in enumerate(stems):
        photo(root / images / f"{s}.jpg", seed=i)
        mask_file(root / masks / f"{s}.png")
    return root


def cub(root: Path, segmentations_inside=False) -> Path:
    base = root / "CUB_200_2011"
    seg = (base if segmentations_inside else root) / "segmentations"
    files = ["001.Black_footed_Albatross/Black_Footed_Albatross_0001_796111.jpg",
             "001.Black_footed_Albatross/Black_Footed_Albatross_0002_55.jpg",
             "002.Laysan_Albatross/Laysan_Albatross_0001_545.jpg",
             "002.Laysan_Albatross/Laysan_Albatross_0002_1027.jpg"]
    for i, rel in enumerate(files):
        photo(base / "images" / rel, seed=i)
        mask_file(seg / rel.replace(".jpg", ".png"))
    (base / "images.txt").write_text("".join(f"{i} {rel}\n" for i, rel in enumerate(files, 1)))
    (base / "train_test_split.txt").write_text("1 1\n2 0\n3 1\n4 0\n")
    (base / "bounding_boxes.txt").write_text("1 1.0 2.0 20.0 10.0\n2 5.0 6.0 30.0 20.0\n3 0.0 0.0 48.0 32.0\n"
                                             "4 10.0 10.0 5.0 5.0\n")
    (base / "parts").mkdir()
    # image 2: parts 1 and 3 visible, part 2 not (its x, y are 0 in the real file).
    (base / "parts" / "part_locs.txt").write_text(
        "1 1 10.0 5.0 1\n2 1 12.5 7.0 1\n2 2 0.0 0.0 0\n2 3 30.0 20.0 1\n4 1 3.0 4.0 1\n")
    return root


def voc(root: Path, year=2007) -> Path:
    base = root / "VOCdevkit" / f"VOC{year}"
    ids = ["000005", "000007"]
    for i, name in enumerate(ids):
        photo(base / "JPEGImages" / f"{name}.jpg", size=(60, 40), seed=i)
    objects = {"000005": [(1, 1, 60, 40, 0, 0), (10, 5, 20, 15, 1, 1)], "000007": [(5.5, 3, 30, 20, 0, 1)]}
    for name, objs in objects.items():
        xml = "".join(f"<object><name>cat</name><truncated>{t}</truncated><difficult>{d}</difficult><bndbox>"
                      f"<xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
                      for x0, y0, x1, y1, d, t in objs)
        (base / "Annotations").mkdir(parents=True, exist_ok=True)
        (base / "Annotations" / f"{name}.xml").write_text(f"<annotation><filename>{name}.jpg</filename>{xml}</annotation>")
    (base / "ImageSets" / "Main").mkdir(parents=True)
    (base / "ImageSets" / "Main" / "trainval.txt").write_text("\n".join(ids) + "\n")
    return root


def coco_list(path: Path, ids) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"train2014/COCO_train2014_{i:012d}.jpg\n" for i in ids))
    return path


# ---------------------------------------------------------------- segmentation layouts


@pytest.mark.parametrize("cls, images, masks", [(D.ECSSD, "images", "ground_truth_mask"),
                                                (D.DUTSTE, "DUTS-TE-Image", "DUTS-TE-Mask"),
                                                (D.DUTOMRON, "DUT-OMRON-image", "pixelwiseGT-new-PNG")])
def test_saliency_layouts(tmp_path, cls, images, masks):
    ds = cls(saliency(tmp_path, images, masks))
    assert ds.task == "segmentation" and len(ds) == 3 and ds.ids == ["a", "b", "c"]
    s = ds[0]
    assert s.id == "a" and s.path.endswith("a.jpg") and s.image.mode == "RGB" and s.image.size == (48, 32)
    assert s.mask.dtype == bool and s.mask.shape == (32, 48)
    assert np.array_equal(s.mask, expected_mask())  # 128 is foreground, 127 background
    assert s.boxes is None and s.parts is None
    assert cls(tmp_path, limit=2).ids == ["a", "b"]


def test_sod_one_bit_masks_and_png_images(tmp_path):
    photo(tmp_path / "images" / "1.jpg")
    photo(tmp_path / "images" / "2.png", seed=1)
    mask_file(tmp_path / "masks" / "1.png", mode="1")
    mask_file(tmp_path / "masks" / "2.png")
    assert Image.open(tmp_path / "masks" / "1.png").mode == "1"
    ds = D.SOD(tmp_path)
    assert ds.ids == ["1", "2"]
    # Thresholding the raw 0/1 values of a mode '1' PNG at 127 would give an empty mask.
    assert np.array_equal(ds[0].mask, expected_mask()) and np.array_equal(ds[1].mask, expected_mask())


def test_missing_mask_is_named(tmp_path):
    saliency(tmp_path, "images", "ground_truth_mask")
    (tmp_path / "ground_truth_mask" / "b.png").unlink()
    with pytest.raises(DatasetError, match=r"1 of 3 images .* no mask .*b\.png.*datasets/ecssd/README\.md"):
        D.ECSSD(tmp_path)


def test_folder_with_and_without_masks(tmp_path):
    photo(tmp_path / "images" / "x.png")
    photo(tmp_path / "images" / "y.webp", seed=1)
    (tmp_path / "images" / "notes.txt").write_text("not an image")
    plain = D.Folder(root=tmp_path)
    assert plain.task == "none" and plain.ids == ["x", "y"] and plain[1].mask is None
    assert D.Folder(path=tmp_path / "images").ids == ["x", "y"]
    mask_file(tmp_path / "masks" / "x.png")
    mask_file(tmp_path / "masks" / "y.bmp")
    with_masks = D.Folder(root=tmp_path)
    assert with_masks.task == "segmentation" and with_masks[1].mask.shape == (32, 48)
    with pytest.raises(DatasetError, match="dataset.path"):
        D.Folder()


# ---------------------------------------------------------------- CUB


@pytest.mark.parametrize("inside", [False, True])
def test_cub_subsets_ids_and_visible_parts(tmp_path, inside):
    root = cub(tmp_path, segmentations_inside=inside)
    everything = D.CUB(root, subset="all")
    assert len(everything) == 4 and everything.ids[0] == "001.Black_footed_Albatross__Black_Footed_Albatross_0001_796111"
    test = D.CUB(root)  # default subset: official test split (is_training == 0)
    assert test.ids == ["001.Black_footed_Albatross__Black_Footed_Albatross_0002_55",
                        "002.Laysan_Albatross__Laysan_Albatross_0002_1027"]
    s = test[0]
    assert s.mask.shape == (32, 48) and s.parts.dtype == np.float32
    assert s.parts.tolist() == [[12.5, 7.0, 1.0], [30.0, 20.0, 3.0]]  # the invisible part 2 is dropped
    assert D.CUB(root / "CUB_200_2011", subset="all").ids == everything.ids  # root at CUB_200_2011 works too
    assert test[1].parts.tolist() == [[3.0, 4.0, 1.0]]


def test_cub_test1000_uses_redo_split(tmp_path):
    root = cub(tmp_path)
    split = root / "CUB_200_2011" / "train_val_test_split.txt"
    with pytest.raises(DatasetError, match="train_val_test_split.txt"):
        D.CUB(root, subset="test1000")
    # ReDO's file: one line per image id (11788), 1000 marked 2.
    marks = np.zeros(11788, int)
    marks[[1, 2] + list(range(100, 1098))] = 2  # ids 2, 3 and 998 ids not in this images.txt
    split.write_text("".join(f"{i} {m}\n" for i, m in enumerate(marks, 1)))
    assert [i.split("__")[1] for i in D.CUB(root, subset="test1000").ids] == ["Black_Footed_Albatross_0002_55",
                                                                              "Laysan_Albatross_0001_545"]
    split.write_text("1 2\n2 0\n")
    with pytest.raises(DatasetError, match="marks 1 images as test"):
        D.CUB(root, subset="test1000")
    with pytest.raises(DatasetError, match="subset must be one of"):
        D.CUB(root, subset="val")


def test_cub_without_segmentations_evaluates_boxes_and_keypoints(tmp_path, caplog):
    root = cub(tmp_path)
    with_masks = D.CUB(root)
    first = with_masks[0]
    assert with_masks.task == "segmentation" and first.mask is not None
    for p in sorted((root / "segmentations").rglob("*"), reverse=True):
        p.unlink() if p.is_file() else p.rmdir()
    (root / "segmentations").rmdir()
    with pytest.raises(DatasetError, match=r"expected the folder .*segmentations.*CUB_200_2011/"):
        D.CUB(root, masks=True)
    with caplog.at_level("WARNING", logger="deepcut"):
        ds = D.CUB(root)  # masks=auto: boxes (CorLoc) and keypoints only, said once
    assert "no segmentations/" in caplog.text and "CorLoc" in caplog.text
    assert ds.task == "localization" and ds.ids == with_masks.ids
    s = ds[0]  # image 2: box x, y, w, h = 5, 6, 30, 20 -> edges
    assert s.mask is None
    np.testing.assert_array_equal(s.boxes, [[5, 6, 35, 26]])
    np.testing.assert_array_equal(s.parts, first.parts)
    assert D.CUB(root, masks=False).task == "localization"
    with pytest.raises(DatasetError, match="masks must be auto, true or false"):
        D.CUB(root, masks="yes")


def test_cub_box_missing_for_an_image(tmp_path):
    root = cub(tmp_path)
    (root / "CUB_200_2011" / "bounding_boxes.txt").write_text("1 1.0 2.0 20.0 10.0\n")
    with pytest.raises(DatasetError, match="bounding_boxes.txt has no box for image 2"):
        D.CUB(root)


@pytest.mark.parametrize("name", ["train_test_split.txt", "bounding_boxes.txt", "parts/part_locs.txt"])
def test_cub_missing_index_file_is_named_as_missing(tmp_path, name):
    """Issue 27, item 10: the missing-file error was swallowed into "expected 2 (or 5) numbers"."""
    root = cub(tmp_path)
    (root / "CUB_200_2011" / name).unlink()
    with pytest.raises(DatasetError, match=f"expected the file .*{name}"):
        D.CUB(root)


def test_cub_malformed_images_txt_line_is_named(tmp_path):
    root = cub(tmp_path)
    with open(root / "CUB_200_2011" / "images.txt", "a") as f:
        f.write("5\n")
    with pytest.raises(DatasetError, match=r"images.txt, line 5: '5' is not '<image_id> <path>'"):
        D.CUB(root)


def test_a_missing_root_names_the_folder_that_does_not_exist(tmp_path):
    """Issue 27, item 10: a wrong dataset.root listed the contents of / (the nearest folder that exists)."""
    with pytest.raises(DatasetError, match=r"but /no_such_dir_27 does not exist\. See") as err:
        D.CUB("/no_such_dir_27/CUB")
    assert "holds" not in str(err.value)
    (tmp_path / "ecssd").mkdir()
    with pytest.raises(DatasetError, match=f"but {tmp_path}/absent does not exist \\({tmp_path} holds: ecssd/\\)"):
        D.ECSSD(tmp_path / "absent" / "ECSSD")


def test_folder_path_takes_one_image_file_or_a_glob(tmp_path):
    """Issue 27, items 10 and 17: dataset.path=photo.jpg said "expected the folder"."""
    for name in ("a.jpg", "b.png", "sub/c.jpg"):
        photo(tmp_path / name)
    (tmp_path / "notes.txt").write_text("x")
    assert D.Folder(path=tmp_path / "a.jpg").ids == ["a"]
    assert D.Folder(path=str(tmp_path / "*.jpg")).ids == ["a"]
    assert D.Folder(path=str(tmp_path / "**" / "*.jpg")).ids == ["a", "c"]
    with pytest.raises(DatasetError, match=r"the pattern .*\*\.gif matches no file"):
        D.Folder(path=str(tmp_path / "*.gif"))
    with pytest.raises(DatasetError, match="notes.txt is not an image file"):
        D.Folder(path=tmp_path / "notes.txt")
    photo(tmp_path / "sub" / "a.jpg")
    with pytest.raises(DatasetError, match="would get the same id"):
        D.Folder(path=str(tmp_path / "**" / "*.jpg"))


# ---------------------------------------------------------------- sharding


def test_shards_partition_the_selection_by_id_whatever_the_listing_order(tmp_path):
    stems = [f"img{i:02d}" for i in range(30)]
    root = saliency(tmp_path / "e", "images", "ground_truth_mask", stems=stems)
    whole = D.ECSSD(root)
    shards = [D.ECSSD(root, shard=i, num_shards=3).ids for i in range(3)]
    assert sorted(sum(shards, [])) == whole.ids and all(shards)  # a partition, no shard empty here
    assert [D.shard_of(i, 3) for i in shards[1]] == [1] * len(shards[1])
    # The listing order does not matter: the same entries given reversed give the same shards.
    entries = list(reversed(whole.entries))
    assert [D.ImageDataset(entries, shard=i, num_shards=3).ids for i in range(3)] == shards
    # Adding images moves no image to another shard (a hash of the id, not a position).
    more = saliency(tmp_path / "f", "images", "ground_truth_mask", stems=stems + ["aaa", "zzz"])
    for i in range(3):
        assert set(shards[i]) <= set(D.ECSSD(more, shard=i, num_shards=3).ids)
    # limit first, then the shard: the shards of a limited run are the limited run.
    limited = [D.ECSSD(root, limit=10, shard=i, num_shards=3).ids for i in range(3)]
    assert sorted(sum(limited, [])) == whole.ids[:10]


@pytest.mark.parametrize("shard, num_shards, problem", [(3, 3, "dataset.shard=3"), (-1, 2, "dataset.shard=-1"),
                                                        (0, 0, "dataset.num_shards=0"), (True, 2, "dataset.shard=True")])
def test_bad_shard_settings_name_the_key(tmp_path, shard, num_shards, problem):
    root = saliency(tmp_path, "images", "ground_truth_mask")
    with pytest.raises(DatasetError, match=problem):
        D.ECSSD(root, shard=shard, num_shards=num_shards)


# ---------------------------------------------------------------- VOC and COCO20k


def test_voc_boxes_all_objects_zero_based_edges(tmp_path):
    root = voc(tmp_path)
    for where in (root, root / "VOCdevkit", root / "VOCdevkit" / "VOC2007"):
        ds = D.VOC(where, year=2007)
        assert ds.name == "voc07" and ds.task == "localization" and ds.ids == ["000005", "000007"]
    s = ds[0]
    assert s.mask is None and s.boxes.dtype == np.float32
    # Both objects, the difficult+truncated one included; (xmin-1, ymin-1, xmax, ymax).
    assert s.boxes.tolist() == [[0, 0, 60, 40], [9, 4, 20, 15]]
    assert ds[1].boxes.tolist() == [[4.5, 2, 30, 20]]
    with pytest.raises(DatasetError, match="voc12.*VOC2012"):
        D.VOC(root, year=2012)


def test_voc_missing_annotation_named(tmp_path):
    root = voc(tmp_path)
    (root / "VOCdevkit" / "VOC2007" / "Annotations" / "000007.xml").unlink()
    with pytest.raises(DatasetError, match=r"1 of the 2 ids .*Annotations.*000007"):
        D.VOC(root)


@pytest.mark.parametrize("year", [2014, 2017])
def test_coco20k_restricted_to_list(tmp_path, year):
    root = coco(tmp_path / "COCO", year)
    listed = coco_list(tmp_path / "coco_20k_filenames.txt", [2, 1])
    ds = D.COCO20k(root, filenames=listed)
    assert ds.ids == ["000000000001", "000000000002"] and ds.task == "localization"
    s = ds[0]
    assert s.image.size == (64, 48)
    assert np.allclose(s.boxes, [[1.5, 2.0, 11.5, 22.0]])  # [x, y, w, h] -> edges; the crowd box is dropped
    assert np.allclose(ds[1].boxes, [[5, 6, 12, 14]])
    # No list: every annotated image present with a non-crowd box (3 is crowd-only, 4 has no file).
    assert D.COCO20k(root).ids == ["000000000001", "000000000002"]
    with pytest.raises(DatasetError, match=r"missing from .*train\d{4}.*000000000004"):
        D.COCO20k(root, filenames=coco_list(tmp_path / "l4.txt", [1, 4]))
    with pytest.raises(DatasetError, match="not in .*instances_train.*first id: 99"):
        D.COCO20k(root, filenames=coco_list(tmp_path / "l99.txt", [99]))
    with pytest.raises(DatasetError, match=r"expected train2014/ with annotations/instances_train2014\.json .* holds: COCO/"):
        D.COCO20k(tmp_path)


def test_coco_instances_masks_crowds_and_the_val_split(tmp_path):
    """Issue 26: every object's mask (polygon or RLE) with its crowd flag, for instance AP."""
    s = D.COCO20k(coco(tmp_path / "COCO", 2017, "val"), split="val")[0]
    first, crowd = s.instances
    assert first["mask"].shape == (48, 64) and not first["iscrowd"] and crowd["iscrowd"]
    assert 180 <= first["mask"].sum() <= 231 and first["mask"][10, 5] and not first["mask"][30, 5]
    assert crowd["mask"][:, :32].all() and not crowd["mask"][:, 32:].any()
    assert D.COCO20k(tmp_path / "COCO", split="val")[1].instances[0]["mask"] is None  # no segmentation: box only
    with pytest.raises(DatasetError, match="dataset.split='test'"):
        D.COCO20k(tmp_path / "COCO", split="test")


def test_datasets_pickle_for_workers(tmp_path):
    for ds in (D.VOC(voc(tmp_path / "v")), D.COCO20k(coco(tmp_path / "c"))):
        again = pickle.loads(pickle.dumps(ds))
        assert again.ids == ds.ids and np.array_equal(again[0].boxes, ds[0].boxes)


# ---------------------------------------------------------------- errors name the file


def test_missing_root_names_folder_and_readme(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(DatasetError, match=r"expected the folder .*nowhere, but .* holds: elsewhere/.*datasets/ecssd/README\.md"):
        D.ECSSD(tmp_path / "nowhere")


def test_wrong_layout_lists_what_is_there(tmp_path):
    saliency(tmp_path, "img", "gt")  # TokenCut's renamed folders
    with pytest.raises(DatasetError, match=r"expected the folder .*images, but .* holds: gt/, img/"):
        D.ECSSD(tmp_path)


@pytest.mark.parametrize("damage, problem", [
    (lambda p: p.write_bytes(b""), "empty file"),
    (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "truncated"),
    (lambda p: p.write_text("this is text, not a JPEG"), "not a readable image"),
])
def test_bad_image_files_are_named(tmp_path, damage, problem):
    saliency(tmp_path, "images", "ground_truth_mask")
    damage(tmp_path / "images" / "b.jpg")
    ds = D.ECSSD(tmp_path)
    ds[0]  # the others still load
    with pytest.raises(DatasetError, match=rf"b\.jpg.*{problem}.*README"):
        ds[1]
    with pytest.raises(DatasetError, match=rf"b\.jpg.*{problem}"):
        D.load_image(tmp_path / "images" / "b.jpg")


def test_mask_size_mismatch_names_both_files(tmp_path):
    saliency(tmp_path, "images", "ground_truth_mask")
    mask_file(tmp_path / "ground_truth_mask" / "a.png", size=(40, 32))
    with pytest.raises(DatasetError, match=r"a\.png: mask is 40x32 .* image .*a\.jpg is 48x32"):
        D.ECSSD(tmp_path)[0]


# ---------------------------------------------------------------- image modes and EXIF


@pytest.mark.parametrize("mode, suffix", [("L", ".png"), ("RGBA", ".png"), ("P", ".png"), ("CMYK", ".jpg"),
                                          ("I;16", ".png"), ("1", ".png"), ("LA", ".png")])
def test_any_mode_loads_as_rgb(tmp_path, mode, suffix):
    source = Image.open(photo(tmp_path / "rgb.png"))
    grey = np.asarray(source.convert("L"))
    path = tmp_path / f"img{suffix}"
    if mode == "I;16":
        Image.fromarray(grey.astype(np.uint16) * 257).save(path)
    else:
        source.convert(mode).save(path)
    assert Image.open(path).mode == mode
    image = D.load_image(path)
    assert image.mode == "RGB" and image.size == (48, 32)
    if mode == "I;16":  # rescaled to 8 bits, not clipped at 255
        assert np.array_equal(np.asarray(image)[..., 0], grey)


def test_sixteen_bit_mask(tmp_path):
    a = np.zeros((4, 6), np.uint16)
    a[:, :3] = 65535
    a[:, 3] = 32896  # 128 * 257: foreground, as 128 is on 8 bits
    a[:, 4] = 32639  # 127 * 257: background
    Image.fromarray(a).save(tmp_path / "m.png")
    assert D.load_mask(tmp_path / "m.png").tolist() == [[True] * 4 + [False] * 2] * 4


def _exif_jpeg(path: Path, pixels: np.ndarray, orientation: int) -> Path:
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(pixels).save(path, exif=exif, quality=95)
    return path


def test_exif_rotated_jpeg_and_its_mask_stay_aligned(tmp_path):
    stored = np.zeros((40, 60, 3), np.uint8)  # stored 60x40, shown upright as 40x60
    stored[5:15, 30:50] = 255
    (tmp_path / "images").mkdir()
    _exif_jpeg(tmp_path / "images" / "r.jpg", stored, orientation=6)
    (tmp_path / "masks").mkdir()
    Image.fromarray(stored[..., 0]).save(tmp_path / "masks" / "r.png")  # drawn on the stored pixels
    s = D.Folder(root=tmp_path)[0]
    assert s.image.size == (40, 60) and s.mask.shape == (60, 40)
    bright = np.asarray(s.image)[..., 0] > 127
    assert s.mask.sum() == 200 and (bright == s.mask).mean() > 0.99
    # A mask drawn on the upright image (already 40x60) is taken as it is.
    Image.fromarray(s.mask.astype(np.uint8) * 255).save(tmp_path / "masks" / "r.png")
    assert np.array_equal(D.Folder(root=tmp_path)[0].mask, s.mask)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_box_rotation_matches_pil(orientation):
    w, h, box = 60, 40, np.array([[30, 5, 50, 15]], np.float32)
    marked = np.zeros((h, w), np.uint8)
    marked[5:15, 30:50] = 255
    upright = np.asarray(_orient(Image.fromarray(marked), orientation)) > 0
    ys, xs = np.nonzero(upright)
    assert _orient_boxes(box, orientation, (w, h)).tolist() == [[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]]


def test_voc_boxes_follow_exif_rotation(tmp_path):
    root = voc(tmp_path)
    stored = np.asarray(Image.open(root / "VOCdevkit/VOC2007/JPEGImages/000007.jpg"))
    _exif_jpeg(root / "VOCdevkit/VOC2007/JPEGImages/000007.jpg", stored, orientation=8)
    s = D.VOC(root)[1]
    assert s.image.size == (40, 60)  # rotated 90 degrees counter-clockwise: (x, y) -> (y, W - x)
    assert s.boxes.tolist() == [[2, 30, 20, 55.5]]


def test_demo_loads_offline(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the demo tried to use the network")
    monkeypatch.setattr(socket, "socket", no_network)
    ds = D.Demo()
    assert ds.task == "none" and len(ds) == 5 and "astronaut" in ds.ids
    for s in ds:
        assert s.image.mode == "RGB" and min(s.image.size) >= 300 and Path(s.path).is_file()


# ---------------------------------------------------------------- configs


def data_root(tmp: Path) -> Path:
    """Every layout under one root, where configs/dataset/*.yaml look for it."""
    saliency(tmp / "ECSSD", "images", "ground_truth_mask")
    saliency(tmp / "DUTS-TE", "DUTS-TE-Image", "DUTS-TE-Mask")
    saliency(tmp / "DUT-OMRON", "DUT-OMRON-image", "pixelwiseGT-new-PNG")
    saliency(tmp / "SOD", "images", "masks")
    saliency(tmp / "folder", "images", "masks")
    cub(tmp / "CUB")
    voc(tmp / "VOC2007", 2007)
    voc(tmp / "VOC2012", 2012)
    coco(tmp / "COCO")
    coco_list(tmp / "coco20k" / "coco_20k_filenames.txt", [1, 2])
    return tmp


def test_every_config_instantiates(tmp_path):
    root = data_root(tmp_path)
    names = {p.stem for p in CONFIGS}
    assert names == {"ecssd", "duts_te", "dut_omron", "cub", "voc07", "voc12", "coco20k", "folder", "sod", "demo"}
    for path in CONFIGS:
        cfg = OmegaConf.create({"data_root": str(root), "dataset": OmegaConf.load(path)})
        ds = instantiate(cfg.dataset)
        assert isinstance(ds, D.ImageDataset) and ds.name == path.stem and len(ds) > 0, path.name
        assert (REPO / ds.readme).is_file(), ds.readme
        ds[0]
    limited = OmegaConf.create({"data_root": str(root), "dataset": OmegaConf.load(CONFIGS[0])})
    limited.dataset.limit = 1
    assert len(instantiate(limited.dataset)) == 1


# ---------------------------------------------------------------- real subsets (../shared/data)

needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is absent")


@needs_shared
def test_shared_sod():
    ds = D.SOD(SHARED / "sod")
    assert len(ds) == 110
    for s in ds:
        assert s.mask.shape == (s.image.height, s.image.width) and 0 < s.mask.mean() < 1


@needs_shared
def test_shared_voc2012():
    ds = D.VOC(SHARED, year=2012)
    assert len(ds) == 32
    for s in ds:
        w, h = s.image.size
        assert len(s.boxes) >= 1 and (s.boxes[:, :2] >= 0).all() and (s.boxes[:, 2] <= w).all() and (s.boxes[:, 3] <= h).all()


@needs_shared
def test_shared_coco2017_through_coco20k():
    ds = D.COCO20k(SHARED / "coco", filenames=None)
    data = json.loads((SHARED / "coco" / "annotations" / "instances_train2017.json").read_text())
    with_objects = {a["image_id"] for a in data["annotations"] if not a["iscrowd"]}
    assert ds.ids == sorted(f"{i:012d}" for i in with_objects) and len(ds) == 62
    for s in (ds[0], ds[len(ds) - 1]):
        w, h = s.image.size
        assert len(s.boxes) >= 1 and (s.boxes[:, 2] <= w + 1e-3).all() and (s.boxes[:, 3] <= h + 1e-3).all()


@needs_shared
@pytest.mark.parametrize("name, cls, count", [("ECSSD", D.ECSSD, 335), ("DUTS-TE", D.DUTSTE, 1671)])
def test_shared_saliency_benchmarks_list_and_read_rgb_and_soft_masks(name, cls, count):
    """The official layouts as published: every image pairs with its mask; the RGB masks (2 in DUTS-TE)
    and the soft matted edges read as the grey value > 127 of their 'L' conversion."""
    ds = cls(SHARED / name)
    assert len(ds) == count
    masks = {e.id: e.mask for e in ds.entries}
    rgb = [i for i, m in masks.items() if Image.open(m).mode == "RGB"]
    soft = [i for i, m in list(masks.items())[:200] if ((np.asarray(Image.open(m).convert("L")) % 255) != 0).any()]
    assert name == "ECSSD" or (len(rgb) == 2 and soft)
    for sid in [*rgb, *soft[:3], ds.ids[0]]:
        s = ds[ds.ids.index(sid)]
        grey = np.asarray(Image.open(masks[sid]).convert("L"))
        assert s.mask.shape == (s.image.height, s.image.width) and s.image.mode == "RGB"
        np.testing.assert_array_equal(s.mask, grey > 127)
        assert 0 < s.mask.mean() < 1


@needs_shared
def test_shared_cub_without_masks_gives_boxes_and_keypoints():
    ds = D.CUB(SHARED / "CUB")
    assert ds.task == "localization" and len(ds) == 80  # the official test split of the 171
    assert len(D.CUB(SHARED / "CUB", subset="all")) == 171
    for s in (ds[0], ds[len(ds) - 1]):
        w, h = s.image.size
        assert s.mask is None and s.boxes.shape == (1, 4) and (s.boxes[:, 2] <= w + 1).all() and (s.boxes[:, 3] <= h + 1).all()
        assert len(s.parts) >= 1 and set(s.parts[:, 2]) <= set(range(1, 16))


@needs_shared
def test_shared_voc2007_trainval_and_test_lists():
    assert D.VOC(SHARED, year=2007).ids == ["000005"]
    ds = D.VOC(SHARED, year=2007, split="trainval+test")
    assert ds.ids == ["000002", "000003", "000004", "000005"]
    grey = [s for s in ds if Image.open(s.path).mode == "L"]  # the dev data's grey photo, if it is here
    for s in grey:
        assert s.image.mode == "RGB"


# ---------------------------------------------------------------- ground truth and identity (issue 11)


def test_zero_one_mask_is_binary_not_empty(tmp_path):
    """A grey mask stored as 0/1 (not 0/255) is the object it marks; 0/255 and empty masks as before."""
    photo(tmp_path / "images" / "a.png")
    region = np.zeros((32, 48), np.uint8)
    region[8:20, 10:30] = 1
    for name, values in {"zero_one": region, "zero_255": region * 255, "empty": region * 0}.items():
        Image.fromarray(values).save(tmp_path / f"{name}.png")
        got = D.load_mask(tmp_path / f"{name}.png", (48, 32))
        assert got.sum() == (0 if name == "empty" else 12 * 20), name
        assert got[8:20, 10:30].all() or name == "empty"


def test_folder_path_uses_its_masks_folder(tmp_path):
    (tmp_path / "masks").mkdir()
    for stem in ("a", "b"):
        photo(tmp_path / f"{stem}.jpg")
        Image.fromarray(np.full((32, 48), 255, np.uint8)).save(tmp_path / "masks" / f"{stem}.png")
    ds = D.Folder(path=tmp_path)
    assert ds.ids == ["a", "b"] and ds.task == "segmentation" and ds[0].mask.all()


def test_fingerprint_follows_content_not_place(tmp_path):
    import shutil
    for stem in ("a", "b"):
        photo(tmp_path / "one" / "images" / f"{stem}.png", seed=ord(stem))
        (tmp_path / "one" / "masks").mkdir(exist_ok=True)
        Image.fromarray(np.full((32, 48), 255, np.uint8)).save(tmp_path / "one" / "masks" / f"{stem}.png")
    shutil.copytree(tmp_path / "one", tmp_path / "two", copy_function=shutil.copyfile)
    one, two = D.Folder(root=tmp_path / "one"), D.Folder(root=tmp_path / "two", limit=1)
    assert one.fingerprint(["a", "b"]) == two.fingerprint(["a", "b"])  # past the limit too
    assert two.fingerprint(["zzz"]) == {"zzz": None}
    photo(tmp_path / "two" / "images" / "b.png", seed=99)
    assert two.fingerprint(["b"]) != one.fingerprint(["b"]) and two.fingerprint(["a"]) == one.fingerprint(["a"])


def test_a_zero_one_mask_saved_as_jpeg_is_read_as_binary_with_a_warning(tmp_path):
    """Issue 27: a 0/1 mask saved as JPEG (values 0..2) was read as empty (IoU 0), silently."""
    yy, xx = np.mgrid[:64, :96]
    truth = (yy - 32) ** 2 + (xx - 48) ** 2 < 20 ** 2  # a disc: its curved edge is where JPEG adds noise
    Image.fromarray(truth.astype(np.uint8)).save(tmp_path / "m.jpg", quality=95)
    assert np.asarray(Image.open(tmp_path / "m.jpg")).max() == 2  # what JPEG made of it: values 0, 1, 2
    with pytest.warns(UserWarning, match="m.jpg: mask values 0..[2-8] .*0/1 mask with compression noise"):
        got = D.load_mask(tmp_path / "m.jpg")
    assert (got & truth).sum() / (got | truth).sum() > 0.9


def test_images_beyond_pils_bomb_limit_are_read_up_to_ours_and_named_beyond(tmp_path, monkeypatch):
    """Issue 27, item 8: a 16000 x 12000 photo failed with PIL's DecompressionBombError (its limit is
    179 Mpx) instead of being shrunk to max_pixels. Here with both limits scaled down 10^5-fold."""
    from deepcut.datasets import io
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)      # PIL would refuse above 2000 px
    monkeypatch.setattr(io, "MAX_DECODE_PIXELS", 200_000)
    photo(tmp_path / "big.png", size=(300, 200))               # 60 000 px: past PIL's, within ours
    assert io.load_image(tmp_path / "big.png").size == (300, 200)
    assert Image.MAX_IMAGE_PIXELS == 1000                      # PIL's own limit restored
    photo(tmp_path / "huge.png", size=(600, 400))              # 240 000 px
    with pytest.raises(DatasetError, match=r"huge.png: larger than 0.2 megapixels, the most that is decoded"):
        io.load_image(tmp_path / "huge.png")
