"""Log-binned descriptors (Amir et al.), checked against their definition written as loops."""
import pytest
import torch
from PIL import Image

import deepcut
from deepcut.features import log_bin


def reference(x: torch.Tensor, grid, hierarchy: int) -> torch.Tensor:
    """The definition, one patch and one bin at a time: level k's 3^k x 3^k window means (windows
    cut at the grid's edge), at the 3 x 3 neighbours 3^k apart, clamped to the grid."""
    h, w = grid
    f = x.reshape(h, w, -1)

    def window(i, j, size):
        r = size // 2
        return f[max(0, i - r):i + r + 1, max(0, j - r):j + r + 1].reshape(-1, f.shape[-1]).mean(0)

    out = []
    for y in range(h):
        for xx in range(w):
            bins = []
            for k in range(hierarchy):
                s = 3 ** k
                for i in (y - s, y, y + s):
                    for j in (xx - s, xx, xx + s):
                        if k and i == y and j == xx:
                            continue
                        bins.append(window(min(max(i, 0), h - 1), min(max(j, 0), w - 1), s))
            out.append(torch.cat(bins))
    return torch.stack(out)


@pytest.mark.parametrize("grid, hierarchy", [((5, 7), 1), ((6, 6), 2), ((4, 11), 3)])
def test_log_bin_matches_the_definition(grid, hierarchy):
    x = torch.randn(2, grid[0] * grid[1], 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = log_bin(x, grid, hierarchy)
    assert out.shape == (2, grid[0] * grid[1], 3 * (1 + 8 * hierarchy))
    for b in range(2):
        assert torch.allclose(out[b], reference(x[b], grid, hierarchy))


def test_level_zero_centre_bin_is_the_patch_itself():
    x = torch.randn(1, 12, 5)
    assert torch.equal(log_bin(x, (3, 4), 2)[0, :, 4 * 5:5 * 5], x[0])  # bin 4 of 9: offset (0, 0)


def test_backbone_option_reaches_the_features():
    plain = deepcut.create_segmenter("whole", backbone="tiny_random", device="cpu")
    binned = deepcut.create_segmenter("whole", backbone="tiny_random", device="cpu", overrides=["backbone.log_bin=2"])
    image = Image.new("RGB", (64, 64), (200, 30, 30))
    f, g = plain(image).features, binned(image).features
    assert g.shape == (f.shape[0], f.shape[1] * 17)
    assert torch.allclose(g[:, 4 * f.shape[1]:5 * f.shape[1]], f, atol=1e-6)
