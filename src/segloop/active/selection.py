"""Budgeted selection of labelling units (whole images or regions).

Cost is counted honestly (docs/algorithms.md §5): a unit costs its pixels, plus
``click_cost_pixels`` if it is a region (one click to point at it). A pixel budget caps
the summed cost; a unit budget caps the number of units. Selection is greedy by score and
never exceeds the budget: a unit that does not fit is skipped and the next one is tried.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from segloop.errors import ConfigError, DataError


@dataclass(frozen=True, slots=True)  # slots: millions of region candidates stay small
class Unit:
    """One thing an annotator can label: region ``region_id`` of image ``image_index``
    (region_id -1 = the whole image), its pixel count, its acquisition score (higher =
    labelled first; -inf = never) and the predicted majority class (-1 = unknown)."""

    image_index: int
    region_id: int
    pixels: int
    score: float
    pred_class: int = -1

    def __post_init__(self) -> None:
        if self.pixels < 0 or self.region_id < -1 or self.image_index < 0:
            raise DataError(
                f"bad unit {self}: pixels and image_index must be >= 0 and "
                "region_id >= -1 (-1 = whole image)"
            )
        if math.isnan(self.score):
            raise DataError(f"unit {self} has a NaN score; fix the score map (NaN probabilities?)")

    @property
    def is_region(self) -> bool:
        return self.region_id >= 0


@dataclass(frozen=True)
class Budget:
    """Exactly one of ``pixels`` (cap on summed cost) or ``units`` (cap on count)."""

    pixels: int | None = None
    units: int | None = None
    click_cost_pixels: float = 0.0

    def __post_init__(self) -> None:
        if (self.pixels is None) == (self.units is None):
            raise ConfigError(
                f"a budget needs exactly one of pixels or units, got "
                f"pixels={self.pixels}, units={self.units}"
            )
        limit = self.pixels if self.pixels is not None else self.units
        if limit is None or limit < 0:
            raise ConfigError(f"budget must be >= 0, got {limit}; give a non-negative count")
        if not (math.isfinite(self.click_cost_pixels) and self.click_cost_pixels >= 0):
            raise ConfigError(
                f"click_cost_pixels must be finite and >= 0, got {self.click_cost_pixels}"
            )

    @classmethod
    def from_fraction(
        cls, fraction: float, pool_pixels: int, click_cost_pixels: float = 0.0
    ) -> Budget:
        """A pixel budget of floor(fraction * pool_pixels), fraction in [0, 1]."""
        if not 0.0 <= fraction <= 1.0:
            raise ConfigError(
                f"budget fraction must be in [0, 1], got {fraction}; e.g. 0.05 for 5% of the pool"
            )
        if pool_pixels < 0:
            raise ConfigError(f"pool_pixels must be >= 0, got {pool_pixels}")
        return cls(pixels=math.floor(fraction * pool_pixels), click_cost_pixels=click_cost_pixels)

    def cost(self, unit: Unit) -> float:
        """Pixels of ``unit`` plus one click if it is a region."""
        return unit.pixels + (self.click_cost_pixels if unit.is_region else 0.0)


@dataclass(frozen=True)
class Selection:
    """What :func:`select` picked, in pick order, and what it spent (cost in pixels)."""

    units: tuple[Unit, ...]
    spent_pixels: int
    spent_cost: float
    clicks: int
    budget: Budget = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary (no unit list)."""
        return {
            "units": len(self.units),
            "images": len({u.image_index for u in self.units}),
            "spent_pixels": self.spent_pixels,
            "spent_cost": self.spent_cost,
            "clicks": self.clicks,
            "budget_pixels": self.budget.pixels,
            "budget_units": self.budget.units,
            "click_cost_pixels": self.budget.click_cost_pixels,
        }


class _Meter:
    """Running spend against a budget (and a cap on units per image)."""

    def __init__(self, budget: Budget, max_per_image: int | None = None) -> None:
        self.budget = budget
        self.max_per_image = max_per_image
        self.picked: list[Unit] = []
        self.per_image: dict[int, int] = {}
        self.cost = 0.0

    def full(self) -> bool:
        b = self.budget
        return len(self.picked) >= b.units if b.units is not None else False

    def fits(self, unit: Unit) -> bool:
        b = self.budget
        if (self.max_per_image is not None
                and self.per_image.get(unit.image_index, 0) >= self.max_per_image):
            return False
        if b.units is not None:
            return len(self.picked) < b.units
        return self.cost + b.cost(unit) <= (b.pixels or 0)

    def take(self, unit: Unit) -> None:
        self.picked.append(unit)
        self.per_image[unit.image_index] = self.per_image.get(unit.image_index, 0) + 1
        self.cost += self.budget.cost(unit)

    def result(self) -> Selection:
        return Selection(
            units=tuple(self.picked),
            spent_pixels=sum(u.pixels for u in self.picked),
            spent_cost=self.cost,
            clicks=sum(u.is_region for u in self.picked),
            budget=self.budget,
        )


def _order(unit: Unit) -> tuple[float, int, int]:
    return (-unit.score, unit.image_index, unit.region_id)


def select(units: Sequence[Unit], budget: Budget, class_balanced: bool = False, *,
           keep_order: bool = False, max_per_image: int | None = None) -> Selection:
    """Pick units greedily by descending score within ``budget``.

    Ties go to the smaller (image_index, region_id). With ``keep_order`` the units are
    taken in the given order instead (a diversity step has ordered them). Units with score
    -inf are never picked. A unit that does not fit the remaining budget (or whose image
    already has ``max_per_image`` picks) is skipped, and the search goes on. With
    ``class_balanced`` the picks go round-robin over ``pred_class`` (-1 counts as a class
    of its own): each turn the class with the fewest picks so far (then the smallest id)
    takes its best remaining unit that fits; a class with none left drops out.
    """
    if not isinstance(budget, Budget):
        raise ConfigError(f"budget must be a Budget, got {type(budget).__name__}")
    finite = [u for u in units if u.score != -math.inf]
    pool = finite if keep_order else sorted(finite, key=_order)
    meter = _Meter(budget, max_per_image)
    if not class_balanced:
        for unit in pool:
            if meter.full():
                break
            if meter.fits(unit):
                meter.take(unit)
        return meter.result()
    queues: dict[int, list[Unit]] = {}
    for unit in pool:
        queues.setdefault(unit.pred_class, []).append(unit)
    heads = dict.fromkeys(queues, 0)
    turns = [(0, cls) for cls in sorted(queues)]
    heapq.heapify(turns)
    while turns and not meter.full():
        count, cls = heapq.heappop(turns)
        queue, i = queues[cls], heads[cls]
        while i < len(queue) and not meter.fits(queue[i]):
            i += 1
        if i == len(queue):
            continue  # this class has nothing left that fits
        meter.take(queue[i])
        heads[cls] = i + 1
        heapq.heappush(turns, (count + 1, cls))
    return meter.result()
