"""Jobs, prompts and seeds: deterministic, independent of other classes, superclasses."""

from __future__ import annotations

import pytest

from segloop.config import parse_config
from segloop.errors import ConfigError
from segloop.synth.prompts import check_classes, job_seed, jobs_for, label_dir, label_texts


def _synth(**kw: object):  # type: ignore[no-untyped-def]
    return parse_config({"synth": kw}).synth


def test_jobs_cycle_names_and_templates_with_stable_seeds() -> None:
    cfg = _synth(classes=[{"label": "vehicle", "names": ["car", "truck"]}],
                 templates=["a photo of a {c}", "a {c} on a road"], images_per_class=5)
    jobs = jobs_for(cfg, 0, global_seed=7)
    assert [j.prompt for j in jobs] == ["a photo of a car", "a car on a road",
                                        "a photo of a truck", "a truck on a road",
                                        "a photo of a car"]
    assert {j.label for j in jobs} == {"vehicle"} and [j.index for j in jobs] == list(range(5))
    assert len({j.seed for j in jobs}) == 5
    assert jobs == jobs_for(cfg, 0, global_seed=7)
    assert jobs[0].seed != jobs_for(cfg, 0, global_seed=8)[0].seed
    assert 0 <= jobs[0].seed < 2**63


def test_adding_a_class_changes_no_other_seed() -> None:
    one = jobs_for(_synth(classes=["cat"], images_per_class=3), 0, 0)
    two = jobs_for(_synth(classes=["dog", "cat"], images_per_class=3), 1, 0)
    assert [j.seed for j in one] == [j.seed for j in two]
    assert job_seed(0, "cat", "cat", "a photo of a {c}", 0) == one[0].seed


def test_bad_classes_are_refused() -> None:
    with pytest.raises(ConfigError, match="synth.classes is empty"):
        check_classes(_synth())
    with pytest.raises(ConfigError, match="share the folder 'potted_plant'"):
        check_classes(_synth(classes=["potted plant", "potted_plant"]))


def test_label_dirs_and_clip_texts() -> None:
    assert label_dir("potted plant") == "potted_plant" and label_dir("tv/monitor") == "tv_monitor"
    cfg = _synth(classes=["cat", {"label": "vehicle", "names": ["car"]}])
    assert label_texts(cfg) == ["a photo of a cat", "a photo of a vehicle"]
