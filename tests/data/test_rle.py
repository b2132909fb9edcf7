from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from segloop.data import rle
from segloop.errors import DataError


def roundtrip(mask: np.ndarray) -> dict:
    encoded = rle.encode(mask)
    assert isinstance(encoded["counts"], str)
    assert encoded["size"] == [mask.shape[0], mask.shape[1]]
    decoded = rle.decode(encoded)
    assert decoded.dtype == bool and decoded.shape == mask.shape
    np.testing.assert_array_equal(decoded, mask.astype(bool))
    return encoded


def single(h: int, w: int, y: int, x: int) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y, x] = True
    return m


@pytest.mark.parametrize(
    "mask",
    [
        np.zeros((5, 7), bool),
        np.ones((5, 7), bool),
        single(5, 7, 0, 0),
        single(5, 7, 4, 6),
        single(5, 7, 2, 3),
        np.array([[1, 0, 1, 0, 1], [0, 1, 0, 1, 0]], bool),  # non-contiguous
        np.array([[1, 1, 0, 0, 1, 0, 1]], bool),  # 1xN
        np.array([[0], [1], [1], [0], [1]], bool),  # Nx1
        np.ones((1, 1), bool),
        np.zeros((1, 1), bool),
        np.eye(40, 300, dtype=np.uint8),  # long runs need several 5-bit chunks
    ],
)
def test_hand_cases(mask: np.ndarray) -> None:
    roundtrip(mask)


def test_area_and_bbox() -> None:
    m = np.zeros((10, 20), bool)
    m[2:5, 3:9] = True
    m[7, 15] = True
    r = rle.encode(m)
    assert rle.area(r) == 19
    assert rle.bbox(r) == (3.0, 2.0, 13.0, 6.0)
    empty = rle.encode(np.zeros((4, 4), bool))
    assert rle.area(empty) == 0
    assert rle.bbox(empty) == (0.0, 0.0, 0.0, 0.0)


def test_counts_as_bytes_and_uncompressed() -> None:
    m = single(3, 4, 1, 2)
    r = rle.encode(m)
    np.testing.assert_array_equal(
        rle.decode({"size": r["size"], "counts": r["counts"].encode()}), m
    )
    # column-major runs: 2*3+1 = 7 zeros, 1 one, 4 zeros
    np.testing.assert_array_equal(rle.decode({"size": [3, 4], "counts": [7, 1, 4]}), m)


def test_many() -> None:
    rng = np.random.default_rng(0)
    masks = rng.random((4, 9, 13)) < 0.3
    rles = rle.encode_many(masks)
    assert len(rles) == 4
    assert rles == [rle.encode(m) for m in masks]
    np.testing.assert_array_equal(rle.decode_many(rles), masks)
    assert rle.encode_many(np.zeros((0, 3, 3), bool)) == []
    assert rle.decode_many([], shape=(3, 5)).shape == (0, 3, 5)


@pytest.mark.parametrize(
    ("mask", "needle"),
    [
        (np.zeros((2, 3, 1), bool), "must be (H, W), got shape (2, 3, 1)"),
        (np.zeros(5, bool), "got shape (5,)"),
        (np.zeros((2, 2), np.float32), "dtype float32"),
        (np.array([[0, 2]], np.uint8), "found values [2]"),
    ],
)
def test_encode_rejects(mask: np.ndarray, needle: str) -> None:
    with pytest.raises(DataError) as info:
        rle.encode(mask)
    assert needle in str(info.value)


def test_encode_many_rejects_2d() -> None:
    with pytest.raises(DataError, match=r"\(N, H, W\)"):
        rle.encode_many(np.zeros((3, 3), bool))


@pytest.mark.parametrize(
    ("bad", "needle"),
    [
        ("not a dict", "must be a dict"),
        ({"counts": "0"}, "must be a dict"),
        ({"size": [3], "counts": "0"}, "size must be [h, w]"),
        ({"size": [-1, 3], "counts": "0"}, "size must be [h, w]"),
        ({"size": [3, 4], "counts": "<<"}, "cover 24 pixels but size 3x4 has 12"),
        ({"size": [3, 4], "counts": "~~"}, "outside COCO's alphabet"),
        ({"size": [3, 4], "counts": "o"}, "truncated"),
        ({"size": [3, 4], "counts": "é"}, "not ASCII"),
        ({"size": [3, 4], "counts": 12}, "must be a str, bytes or list"),
        ({"size": [3, 4], "counts": [5, -1, 8]}, "non-negative"),
        ({"size": [3, 4], "counts": [5, 1]}, "cover 6 pixels"),
        ({"size": [3, 4], "counts": "7O"}, "negative run"),
    ],
)
def test_decode_rejects_malformed(bad: object, needle: str) -> None:
    with pytest.raises(DataError) as info:
        rle.decode(bad)  # type: ignore[arg-type]
    assert needle in str(info.value)


def test_decode_many_rejects_mixed_sizes() -> None:
    a = rle.encode(np.zeros((2, 3), bool))
    b = rle.encode(np.zeros((3, 2), bool))
    with pytest.raises(DataError, match="one size"):
        rle.decode_many([a, b])
    with pytest.raises(DataError, match=r"expected \(4, 4\)"):
        rle.decode_many([a], shape=(4, 4))


masks = st.tuples(st.integers(1, 24), st.integers(1, 24)).flatmap(lambda hw: arrays(np.bool_, hw))


@settings(max_examples=50, deadline=None)
@given(masks)
def test_roundtrip_property(mask: np.ndarray) -> None:
    r = roundtrip(mask)
    assert rle.area(r) == int(mask.sum())
    x, y, w, h = rle.bbox(r)
    if mask.any():
        ys, xs = np.nonzero(mask)
        assert (x, y, w, h) == (
            xs.min(),
            ys.min(),
            xs.max() - xs.min() + 1,
            ys.max() - ys.min() + 1,
        )
    else:
        assert (x, y, w, h) == (0, 0, 0, 0)


@settings(max_examples=30, deadline=None)
@given(
    st.tuples(st.integers(0, 5), st.integers(1, 12), st.integers(1, 12)).flatmap(
        lambda s: arrays(np.uint8, s, elements=st.integers(0, 1))
    )
)
def test_many_roundtrip_property(stack: np.ndarray) -> None:
    rles = rle.encode_many(stack)
    np.testing.assert_array_equal(rle.decode_many(rles, shape=stack.shape[1:]), stack.astype(bool))
