from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segloop.active.selection import Budget, Selection, Unit, select
from segloop.errors import ConfigError, DataError


def keys(sel: Selection) -> list[tuple[int, int]]:
    return [(u.image_index, u.region_id) for u in sel.units]


def test_greedy_order_and_ties() -> None:
    units = [
        Unit(2, 0, 10, 0.5),
        Unit(1, 3, 10, 0.9),
        Unit(0, 5, 10, 0.5),
        Unit(0, 1, 10, 0.5),
        Unit(3, -1, 10, 0.1),
    ]
    sel = select(units, Budget(units=4))
    assert keys(sel) == [(1, 3), (0, 1), (0, 5), (2, 0)]
    assert sel.spent_pixels == 40 and sel.clicks == 4 and sel.spent_cost == 40.0


def test_skip_and_continue_never_over_budget() -> None:
    units = [Unit(0, 0, 80, 0.9), Unit(0, 1, 50, 0.8), Unit(0, 2, 20, 0.7), Unit(0, 3, 5, 0.1)]
    sel = select(units, Budget(pixels=100))
    assert keys(sel) == [(0, 0), (0, 2)]  # 50 does not fit after 80; 20 does; 5 does not
    assert sel.spent_pixels == 100 and sel.spent_cost == 100.0


def test_click_cost_counts_for_regions_only() -> None:
    units = [Unit(0, -1, 40, 0.9), Unit(1, 0, 40, 0.8), Unit(1, 1, 10, 0.7)]
    budget = Budget(pixels=95, click_cost_pixels=10.0)
    assert budget.cost(units[0]) == 40 and budget.cost(units[1]) == 50
    sel = select(units, budget)
    assert keys(sel) == [(0, -1), (1, 0)]  # 40 + 50; the 10 + 10 region no longer fits
    assert sel.clicks == 1 and sel.spent_pixels == 80 and sel.spent_cost == 90.0


def test_minus_inf_never_selected() -> None:
    units = [Unit(0, 0, 1, -math.inf), Unit(0, 1, 1, -5.0)]
    assert keys(select(units, Budget(pixels=10**6))) == [(0, 1)]
    assert keys(select(units, Budget(units=10), class_balanced=True)) == [(0, 1)]


def test_class_balanced_round_robin() -> None:
    units = [Unit(0, i, 1, 0.9 - i / 100, pred_class=0) for i in range(5)]
    units += [Unit(1, i, 1, 0.5 - i / 100, pred_class=2) for i in range(2)]
    units += [Unit(2, 0, 1, 0.1, pred_class=-1)]
    sel = select(units, Budget(units=6), class_balanced=True)
    assert [u.pred_class for u in sel.units] == [-1, 0, 2, 0, 2, 0]
    assert keys(sel)[:3] == [(2, 0), (0, 0), (1, 0)]
    plain = select(units, Budget(units=6))
    assert [u.pred_class for u in plain.units] == [0, 0, 0, 0, 0, 2]


def test_class_balanced_skips_what_does_not_fit() -> None:
    units = [Unit(0, 0, 8, 0.9, 0), Unit(0, 1, 2, 0.8, 0), Unit(0, 2, 5, 0.95, 1)]
    sel = select(units, Budget(pixels=7), class_balanced=True)
    # class 0's turn: its best (8 px) does not fit, its next (2 px) does; then class 1 (5 px)
    assert keys(sel) == [(0, 1), (0, 2)] and sel.spent_pixels == 7


def test_budget_validation_and_fraction() -> None:
    with pytest.raises(ConfigError, match="exactly one"):
        Budget()
    with pytest.raises(ConfigError, match="exactly one"):
        Budget(pixels=1, units=1)
    with pytest.raises(ConfigError, match=">= 0"):
        Budget(pixels=-1)
    with pytest.raises(ConfigError, match="click_cost"):
        Budget(units=1, click_cost_pixels=-1.0)
    b = Budget.from_fraction(0.05, 1001, click_cost_pixels=2.0)
    assert b == Budget(pixels=50, click_cost_pixels=2.0)
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        Budget.from_fraction(1.5, 100)
    with pytest.raises(DataError, match="NaN"):
        Unit(0, 0, 1, math.nan)
    with pytest.raises(DataError, match="region_id"):
        Unit(0, -2, 1, 0.0)


def test_to_dict_and_empty() -> None:
    sel = select([Unit(0, 0, 3, 0.4), Unit(1, -1, 5, 0.3)], Budget(pixels=0))
    assert sel.units == () and sel.spent_cost == 0.0
    d = select([Unit(0, 0, 3, 0.4), Unit(1, -1, 5, 0.3)], Budget(pixels=20)).to_dict()
    assert d == {
        "units": 2,
        "images": 2,
        "spent_pixels": 8,
        "spent_cost": 8.0,
        "clicks": 1,
        "budget_pixels": 20,
        "budget_units": None,
        "click_cost_pixels": 0.0,
    }


unit_st = st.builds(
    Unit,
    image_index=st.integers(0, 4),
    region_id=st.integers(-1, 6),
    pixels=st.integers(0, 300),
    score=st.one_of(st.floats(-1, 1), st.just(-math.inf)),
    pred_class=st.integers(-1, 3),
)


@settings(max_examples=100, deadline=None)
@given(
    units=st.lists(unit_st, max_size=30),
    limit=st.integers(0, 2000),
    by_units=st.booleans(),
    click=st.sampled_from([0.0, 1.5, 10.0]),
    balanced=st.booleans(),
)
def test_never_over_budget_and_maximal(
    units: list[Unit], limit: int, by_units: bool, click: float, balanced: bool
) -> None:
    budget = Budget(units=limit % 12) if by_units else Budget(pixels=limit, click_cost_pixels=click)
    sel = select(units, budget, class_balanced=balanced)
    picked = list(sel.units)
    cost = math.fsum(budget.cost(u) for u in picked)
    assert sel.spent_cost == pytest.approx(cost)
    assert sel.spent_pixels == sum(u.pixels for u in picked)
    assert sel.clicks == sum(u.region_id >= 0 for u in picked)
    assert all(u.score != -math.inf for u in picked)
    remaining = list(units)
    for u in picked:
        remaining.remove(u)  # a sub-multiset of the input
    candidates = [u for u in remaining if u.score != -math.inf]
    if by_units:
        assert len(picked) == min(budget.units, len(picked) + len(candidates))
    else:
        assert cost <= limit + 1e-9
        # maximal: nothing left over would still have fitted
        assert all(cost + budget.cost(u) > limit for u in candidates)
    if not balanced:
        scores = [u.score for u in picked]
        assert scores == sorted(scores, reverse=True)


def test_kept_order_and_per_image_cap() -> None:
    units = [Unit(0, 0, 10, 0.1), Unit(0, 1, 10, 0.9), Unit(0, 2, 10, 0.8),
             Unit(1, 0, 10, 0.2), Unit(2, 0, 10, 0.3)]
    assert keys(select(units, Budget(units=3), keep_order=True)) == [(0, 0), (0, 1), (0, 2)]
    capped = select(units, Budget(units=4), max_per_image=1)
    assert keys(capped) == [(0, 1), (2, 0), (1, 0)]  # best per image, then nothing left
    both = select(units, Budget(pixels=40), keep_order=True, max_per_image=2)
    assert keys(both) == [(0, 0), (0, 1), (1, 0), (2, 0)]
