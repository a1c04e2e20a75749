"""The step protocol's shared pieces: the raster cursor and padded maps (int and tensor positions alike)."""

from __future__ import annotations

import pytest
import torch

from pixelprior.nn import Margin, PaddedMap, RasterCursor, Visit


def test_cursor_reports_what_became_final():
    cursor = RasterCursor(width=3, num_steps=2)
    visits = [cursor.advance(i, j) for i in range(2) for j in range(3) for _ in range(2)]
    assert visits[:4] == [Visit(0, None, None), Visit(1, None, None), Visit(0, (0, 0), None), Visit(1, None, None)]
    assert visits[6] == Visit(0, (0, 2), 0) and visits[6 + 1] == Visit(1, None, None)  # (1, 0): row 0 is final
    assert [v.final for v in visits[::2]] == [None, (0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]


@pytest.mark.parametrize(
    "calls",
    [[(0, 1)], [(0, 0), (0, 0), (0, 0)], [(0, 0), (0, 1)], [(0, 0), (0, 0), (1, 0)], [(0, 0), (0, 0), (0, 3)]],
    ids=["skip-start", "extra-step", "missing-step", "skip-row", "past-the-row"],
)
def test_cursor_refuses_steps_out_of_order(calls):
    cursor = RasterCursor(width=3, num_steps=2)
    with pytest.raises(ValueError, match="raster order"):
        for i, j in calls:
            cursor.advance(i, j)


@pytest.mark.parametrize("tensor_positions", [False, True], ids=["int", "tensor"])
def test_padded_map_reads_and_writes(tensor_positions):
    margin = Margin(top=2, left=1, right=2)
    buffer = PaddedMap.zeros(2, 3, (4, 5), margin, torch.zeros((), dtype=torch.float64))
    assert buffer.data.shape == (2, 3, 6, 8) and buffer.interior.shape == (2, 3, 4, 5)
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    position = torch.tensor if tensor_positions else int
    for i in range(4):
        for j in range(5):
            buffer.write(x[:, :, i, j], position(i), position(j))
    assert torch.equal(buffer.interior, x)
    assert not buffer.data[:, :, :2].any() and not buffer.data[..., :1].any() and not buffer.data[..., -2:].any()
    reference = torch.nn.functional.pad(x, (1, 2, 2, 0))
    for i in range(-2, 4):
        assert torch.equal(buffer.row(position(i)), reference[:, :, i + 2, 1:6])
        for j in range(-1, 5):
            assert torch.equal(buffer.at(position(i), position(j)), reference[:, :, i + 2, j + 1])
    for i in range(-2, 3):  # 2 x 3 windows inside the margin, which reads as zeros
        for j in range(-1, 4):
            window = buffer.window(position(i), position(j), 2, 3)
            assert torch.equal(window, reference[:, :, i + 2 : i + 4, j + 1 : j + 4])
    buffer.write_row(torch.ones(2, 3, 5, dtype=torch.float64), position(1))
    assert buffer.interior[:, :, 1].eq(1).all()
    assert Margin(1, 2, 0).union(Margin(3, 0, 1, 1)) == Margin(3, 2, 1, 1)
