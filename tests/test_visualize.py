"""deepcut.visualize: known colours at known label positions, heat maps monotonic in the value,
affinity and eigenvector maps on synthetic features whose answer is known."""
import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image

from deepcut import visualize as viz
from deepcut.features import center


def rgb_of(cmap, x):
    return tuple(int(round(c * 255)) for c in matplotlib.colormaps[cmap](x)[:3])


def luminance(rgb):
    r, g, b = (np.asarray(rgb, np.float64)[..., i] for i in range(3))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def test_label_colors_background_then_distinct_categorical_colours():
    colors = viz.label_colors(11)
    assert colors.dtype == np.uint8 and colors.shape == (11, 3)
    assert tuple(colors[0]) == viz.BACKGROUND
    assert [tuple(c) for c in colors[1:]] == [rgb_of("tab10", i / 10 + 0.05) for i in range(10)]
    many = viz.label_colors(21)  # 20 foreground labels: tab20, still all distinct
    assert len({tuple(c) for c in many}) == 21


def test_label_map_paints_each_label_its_colour_and_lists_them_in_a_legend():
    labels = torch.zeros(3, 4, dtype=torch.long)
    labels[0, 3] = 2
    labels[2, 0] = 1
    colors = viz.label_colors(3)
    plain = viz.label_map(labels, size=(40, 30), legend=False)
    assert plain.size == (40, 30)
    px = np.asarray(plain)
    assert tuple(px[5, 35]) == tuple(colors[2])   # patch (0, 3) covers x 30..39, y 0..9
    assert tuple(px[25, 5]) == tuple(colors[1])   # patch (2, 0)
    assert tuple(px[15, 15]) == tuple(colors[0])
    assert tuple(px[9, 30]) == tuple(colors[2]) and tuple(px[10, 30]) == tuple(colors[0])  # sharp edge

    with_legend = viz.label_map(labels, size=(40, 30))
    assert with_legend.width > 40 and with_legend.height >= 30
    assert np.array_equal(np.asarray(with_legend)[:30, :40], px)
    strip = np.asarray(with_legend)[:, 40:].reshape(-1, 3)
    for label in range(3):  # one swatch per present label
        assert (strip == colors[label]).all(axis=1).sum() > 20


def test_label_map_legend_lists_only_present_labels_and_takes_names():
    labels = torch.tensor([[0, 0], [3, 3]])
    picture = viz.label_map(labels, names=["sky", "a", "b", "cat"])
    strip = np.asarray(picture)[:, 2:].reshape(-1, 3)
    colors = viz.label_colors(4)
    assert (strip == colors[3]).all(axis=1).any()
    assert not (strip == colors[1]).all(axis=1).any()
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        viz.label_map(torch.zeros(2, 2, 2, dtype=torch.long))


def test_overlay_tints_foreground_keeps_background_and_draws_the_box():
    rgb = np.full((20, 30, 3), 100, np.uint8)
    image = Image.fromarray(rgb)
    labels = torch.zeros(20, 30, dtype=torch.long)
    labels[5:15, 10:20] = 1
    out = np.asarray(viz.overlay(image, labels, box=torch.tensor([10.0, 5.0, 20.0, 15.0]), opacity=0.5))
    color = viz.label_colors(2)[1].astype(np.float64)
    assert out.shape == rgb.shape
    assert tuple(out[10, 15]) == tuple(np.round(0.5 * 100 + 0.5 * color).astype(np.uint8))
    assert tuple(out[2, 2]) == (100, 100, 100) and tuple(out[18, 28]) == (100, 100, 100)
    for y, x in ((5, 10), (14, 19), (5, 19), (14, 10)):  # the box's corners: its last pixels are x1-1, y1-1
        assert tuple(out[y, x]) == viz.BOX
    assert tuple(out[15, 20]) == (100, 100, 100)
    no_box = np.asarray(viz.overlay(image.convert("L"), labels))  # grey input comes out RGB
    assert no_box.shape == rgb.shape and tuple(no_box[5, 10]) != viz.BOX
    with pytest.raises(ValueError, match="do not match the image"):
        viz.overlay(image, labels[:10])


def test_overlay_outlines_each_region_and_keys_its_colours_in_a_legend():
    """Issue 27, item 16: run.py's overlays had no legend, and a 50 % tint hid the boundary."""
    image = Image.fromarray(np.full((240, 320, 3), 100, np.uint8))
    labels = torch.zeros(240, 320, dtype=torch.long)
    labels[120:200, 100:180], labels[120:200, 180:260] = 1, 2
    colors = viz.label_colors(3)
    plain = np.asarray(viz.overlay(image, labels, opacity=0.5))
    assert tuple(plain[120, 140]) == tuple(colors[1]) and tuple(plain[199, 220]) == tuple(colors[2])  # outlines
    assert tuple(plain[160, 140]) == tuple(np.round(50 + 0.5 * colors[1].astype(float)).astype(np.uint8))  # inside
    assert tuple(plain[5, 5]) == (100, 100, 100)
    box = torch.tensor([100.0, 120.0, 260.0, 200.0])
    keyed = np.asarray(viz.overlay(image, labels, box=box, legend=True))
    corner = keyed[:100, :160].reshape(-1, 3)
    for color in (colors[1], colors[2], viz.BOX):  # a swatch of each, on a light panel
        assert (corner == color).all(axis=1).any(), color
    assert (keyed[:100, :160] > 150).all(axis=2).mean() > 0.1
    assert np.array_equal(keyed[100:], np.asarray(viz.overlay(image, labels, box=box))[100:])  # the key only
    assert np.array_equal(np.asarray(viz.overlay(image.resize((30, 20)), labels[::12, ::10][:20, :32][:, :30],
                                                 legend=True))[:5, :5], np.full((5, 5, 3), 100, np.uint8))  # no room


def test_heatmap_is_monotonic_in_the_value_and_clips_to_its_range():
    values = torch.linspace(0, 1, 11).reshape(1, 11)
    px = np.asarray(viz.heatmap(values, size=(110, 10)))
    row = px[5, 5::10]
    assert row.shape == (11, 3)
    assert (np.diff(luminance(row)) > 0).all()
    assert tuple(row[0]) == rgb_of(viz.HEAT_CMAP, 0.0) and tuple(row[-1]) == rgb_of(viz.HEAT_CMAP, 1.0)
    clipped = np.asarray(viz.heatmap(torch.tensor([[-5.0, 0.0, 1.0, 7.0]])))
    assert (clipped[0, 0] == clipped[0, 1]).all() and (clipped[0, 2] == clipped[0, 3]).all()
    auto = np.asarray(viz.heatmap(torch.tensor([[2.0, 4.0]]), vmin=None, vmax=None))
    assert tuple(auto[0, 0]) == rgb_of(viz.HEAT_CMAP, 0.0) and tuple(auto[0, 1]) == rgb_of(viz.HEAT_CMAP, 1.0)
    flat = np.asarray(viz.heatmap(np.full((2, 2), 3.0), vmin=None, vmax=None))
    assert (flat == flat[0, 0]).all()


def test_heatmap_blends_over_an_image():
    image = Image.new("RGB", (8, 4), (200, 0, 0))
    out = np.asarray(viz.heatmap(torch.ones(2, 4), image=image, opacity=0.5)).astype(int)
    top = np.array(rgb_of(viz.HEAT_CMAP, 1.0))
    assert out.shape == (4, 8, 3)
    assert np.abs(out[0, 0] - (np.array([200, 0, 0]) + top) / 2).max() <= 1


def test_soft_maps_one_heat_map_per_cluster_brightest_where_it_is_assigned():
    soft = torch.zeros(2, 4, 4)
    soft[0, :, :2], soft[1, :, 2:] = 1.0, 1.0
    maps = viz.soft_maps(soft, size=(40, 40))
    assert len(maps) == 2 and all(m.size == (40, 40) for m in maps)
    left, right = (luminance(np.asarray(m)[20, [5, 35]]) for m in maps)
    assert left[0] > left[1] and right[1] > right[0]
    with pytest.raises(ValueError, match="soft assignment"):
        viz.soft_maps(None)


def two_groups(grid=(4, 6)):
    """Features of a (4, 6) grid: the left 2 columns are one direction, the rest another."""
    h, w = grid
    f = torch.zeros(h, w, 8)
    f[:, :2, 0] = 1.0
    f[:, 2:, 1] = 1.0
    return f.reshape(h * w, 8) + 0.01 * torch.randn(h * w, 8, generator=torch.Generator().manual_seed(0))


def test_patch_affinity_is_the_cosine_similarity_to_the_chosen_patch():
    f = two_groups()
    sim = viz.patch_affinity(f, (4, 6), (1, 0))
    assert sim.shape == (4, 6)
    assert sim[1, 0] == pytest.approx(1.0, abs=1e-6)
    assert (sim[:, :2] > 0.99).all() and (sim[:, 2:].abs() < 0.05).all()
    centred = viz.patch_affinity(center(f), (4, 6), (1, 0))
    assert (centred[:, 2:] < -0.9).all()  # after centring the two groups point opposite ways
    with pytest.raises(ValueError, match="outside the 4 x 6 patch grid"):
        viz.patch_affinity(f, (4, 6), (4, 0))


def test_affinity_map_colours_similar_patches_red_and_marks_the_patch():
    px = np.asarray(viz.affinity_map(center(two_groups()), (4, 6), (1, 0), size=(60, 40)))
    assert px.shape == (40, 60, 3)
    similar, opposite = px[35, 15], px[35, 45]
    assert similar[0] > similar[2] and opposite[2] > opposite[0]
    assert tuple(px[10, 0]) == (0, 0, 0)  # the outline of patch (1, 0): x 0..9, y 10..19


def test_eigenvector_map_shows_the_two_signs_of_the_cut_symmetrically():
    v = torch.tensor([[-0.5, -0.1, 0.1, 0.5]])
    px = np.asarray(viz.eigenvector_map(v))
    assert tuple(px[0, 3]) == rgb_of(viz.SIGNED_CMAP, 1.0) and tuple(px[0, 0]) == rgb_of(viz.SIGNED_CMAP, 0.0)
    assert px[0, 2, 0] > px[0, 2, 2] and px[0, 1, 2] > px[0, 1, 0]
    flipped = np.asarray(viz.eigenvector_map(-v))
    assert np.array_equal(flipped[0, ::-1], px[0])


def test_foreground_patch_is_inside_the_foreground_near_its_centre():
    lab = torch.zeros(9, 9, dtype=torch.long)
    lab[2:7, 3:8] = 1
    assert viz.foreground_patch(lab) == (4, 5)
    ring = torch.zeros(9, 9, dtype=torch.long)
    ring[2:7, 2:7] = 1
    ring[3:6, 3:6] = 0  # the centroid itself is background: the nearest foreground patch
    r, c = viz.foreground_patch(ring)
    assert ring[r, c] == 1 and abs(r - 4) + abs(c - 4) == 2
    assert viz.foreground_patch(torch.zeros(4, 6, dtype=torch.long)) == (2, 3)


def test_panels_gives_every_applicable_picture_at_the_image_size():
    image = Image.new("RGB", (60, 40), (50, 60, 70))
    patch_labels = torch.zeros(4, 6, dtype=torch.long)
    patch_labels[:, :2] = 1
    labels = patch_labels.repeat_interleave(10, 0).repeat_interleave(10, 1)
    soft = torch.stack([(patch_labels == 0).float(), (patch_labels == 1).float()])
    out = viz.panels(image, labels, torch.tensor([0.0, 0.0, 20.0, 40.0]), soft=soft, features=two_groups(),
                     grid=(4, 6), patch_labels=patch_labels, eigenvector=torch.randn(4, 6))
    assert set(out) == {"overlay", "labels", "soft_0", "soft_1", "eigenvector", "affinity"}
    assert all(p.size == (60, 40) for k, p in out.items() if k != "labels")
    assert out["labels"].height == 40 and out["labels"].width > 60
    assert set(viz.panels(image, labels)) == {"overlay", "labels"}
    fig = viz.figure(out, columns=3)
    assert len([ax for ax in fig.axes if ax.images]) == 6
    assert [ax.get_title() for ax in fig.axes[:2]] == ["overlay", "labels"]
    with pytest.raises(ValueError, match="no pictures"):
        viz.figure({})


def test_parts_grid_gives_a_part_the_same_colour_in_every_photo():
    from deepcut.visualize import label_colors, parts_grid

    grey = Image.new("RGB", (40, 20), (100, 100, 100))
    first, second = np.zeros((20, 40), int), np.zeros((20, 40), int)
    first[:, :20], second[:, 20:] = 1, 1    # part 1 on the left in one, on the right in the other
    second[:, :5] = 11                      # a palette beyond tab10 for the collection (tab20)
    grid = np.asarray(parts_grid([grey, grey], [first, second], columns=2, tile=40, opacity=1.0))
    assert grid.shape == (40, 80, 3)
    # Each photo fits its 40 x 40 cell at 40 x 20, centred: rows 10-29.
    colour = label_colors(12)[1]
    assert (grid[15, 5] == colour).all() and (grid[15, 40 + 30] == colour).all()  # the same part, the same colour
    assert (grid[15, 30] == 100).all()  # background untinted
    assert (grid[0, 0] == 255).all()    # the cell's margin
