"""Semi-supervised training: losses against hand-computed values, CutMix, EMA, the loop."""

from __future__ import annotations

import math

import pytest
import torch

from segloop.train.loop import TrainSettings, sampling_weights, train_model
from segloop.train.models import build_model
from segloop.train.semi import (
    EmaTeacher,
    SemiSettings,
    UnlabelledBatch,
    color_jitter,
    consistency_loss,
    cutmix_boxes,
    mix,
    uncertainty_loss,
)

IGNORE = 255


def test_consistency_loss_by_hand() -> None:
    # one image, 2 classes, 1 x 3 pixels: logits (0, 0), (2, 0), (0, 1)
    logits = torch.tensor([[[[0.0, 2.0, 0.0]], [[0.0, 0.0, 1.0]]]], requires_grad=True)
    target = torch.tensor([[[0, 0, 1]]])
    confident = torch.tensor([[[False, True, True]]])
    valid = torch.tensor([[[True, True, True]]])
    got = consistency_loss(logits, UnlabelledBatch(torch.zeros(1, 3, 1, 3), target,
                                                   confident, valid))
    ce1 = math.log(1 + math.exp(-2.0))  # pixel 2: class 0 with logits (2, 0)
    ce2 = math.log(1 + math.exp(-1.0))  # pixel 3: class 1 with logits (0, 1)
    assert float(got.detach()) == pytest.approx((ce1 + ce2) / 3, rel=1e-6)
    got.backward()
    assert logits.grad is not None and float(logits.grad[0, :, 0, 0].abs().sum()) == 0.0
    none = consistency_loss(logits, UnlabelledBatch(torch.zeros(1, 3, 1, 3), target,
                                                    torch.zeros_like(confident), valid))
    assert float(none.detach()) == 0.0 and none.requires_grad


def test_uncertainty_loss_is_the_mean_uig_of_valid_pixels() -> None:
    # softmax (0.6, 0.1, 0.3) has UIG 0.49 (worked check, docs/algorithms.md §1)
    p = torch.tensor([0.6, 0.1, 0.3])
    logits = torch.log(p).view(1, 3, 1, 1).repeat(1, 1, 1, 2)
    logits[0, :, 0, 1] = torch.tensor([5.0, 5.0, 5.0])  # uniform: UIG 1, but not valid
    valid = torch.tensor([[[True, False]]])
    assert float(uncertainty_loss(logits, valid)) == pytest.approx(0.49, abs=5e-3)
    both = torch.ones(1, 1, 2, dtype=torch.bool)
    assert float(uncertainty_loss(logits, both)) == pytest.approx((0.49 + 1.0) / 2, abs=5e-3)


def test_cutmix_boxes_and_mix() -> None:
    g = torch.Generator().manual_seed(0)
    box = cutmix_boxes(64, 40, 60, g)
    area = box.flatten(1).float().mean(1)
    assert box.dtype == torch.bool and box.shape == (64, 40, 60)
    assert float(area.min()) > 0.15 and float(area.max()) < 0.6  # a quarter to a half
    x = torch.arange(2.0).view(2, 1, 1, 1).expand(2, 3, 40, 60)
    mixed = mix(x, box[:2], torch.tensor([1, 0]))
    assert torch.equal(mixed[0, 0][box[0]], torch.ones(int(box[0].sum())))
    assert torch.equal(mixed[0, 0][~box[0]], torch.zeros(int((~box[0]).sum())))
    labels = torch.zeros(2, 40, 60, dtype=torch.long)
    labels[1] = 7
    assert torch.equal(mix(labels, box[:2], torch.tensor([1, 0]))[0] == 7, box[0])


def test_color_jitter_stays_in_range_and_zero_is_identity() -> None:
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    assert torch.equal(color_jitter(x, 0.0, torch.Generator()), x)
    y = color_jitter(x, 0.4, torch.Generator().manual_seed(2))
    assert y.shape == x.shape and float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert not torch.equal(x, y)


def test_ramp_and_ema() -> None:
    s = SemiSettings(start_fraction=0.2, ramp_fraction=0.2)
    assert [s.ramp(k, 100) for k in (0, 19, 20, 29, 39, 80)] == pytest.approx(
        [0.0, 0.0, 0.05, 0.5, 1.0, 1.0])
    model = torch.nn.Linear(2, 1)
    teacher = EmaTeacher(model, 0.9)
    before = teacher.model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    teacher.update(model)
    torch.testing.assert_close(teacher.model.weight, 0.9 * before + 0.1 * model.weight)
    assert not teacher.model.training and not teacher.model.weight.requires_grad
    with pytest.raises(ValueError, match="ema_decay"):
        EmaTeacher(model, 1.0)


def test_sampling_weights() -> None:
    labels = torch.full((3, 2, 2), IGNORE, dtype=torch.uint8)
    labels[0, 0, 0] = 1
    labels[2] = 0
    assert sampling_weights(labels, IGNORE, "image").tolist() == [1.0, 0.0, 1.0]
    assert sampling_weights(labels, IGNORE, "pixels").tolist() == [1.0, 0.0, 4.0]
    with pytest.raises(ValueError, match="label sampling"):
        sampling_weights(labels, IGNORE, "regions")


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8, generator=g)
    labels = torch.full((6, 16, 16), IGNORE, dtype=torch.uint8)
    labels[:2] = (images[:2, 0] > 127).to(torch.uint8)  # 2 labelled images, 4 unlabelled
    return images, labels


def test_semi_training_is_seeded_and_uses_the_pool() -> None:
    images, labels = _data()
    settings = TrainSettings(steps=6, batch_size=2, seed=3)
    semi = SemiSettings(batch_size=2, start_fraction=0.0, ramp_fraction=0.5, threshold=0.0)

    def run(semi_settings: SemiSettings | None) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        model = build_model("unet", 2, width=4, depth=2)
        losses = train_model(model, images, labels, settings, IGNORE, torch.device("cpu"),
                             progress=False, semi=semi_settings)
        assert len(losses) == 6 and all(math.isfinite(v) for v in losses)
        return model.state_dict()

    a, b, plain = run(semi), run(semi), run(None)
    assert all(torch.equal(a[k], b[k]) for k in a)  # same seed: same weights
    assert any(not torch.equal(a[k], plain[k]) for k in a if a[k].is_floating_point())


def test_refresh_replaces_the_labels_at_the_given_fractions() -> None:
    images, labels = _data()
    calls: list[bool] = []

    def refresh(model: torch.nn.Module) -> torch.Tensor:
        calls.append(model.training)
        grown = labels.clone()
        grown[2] = 1  # a third image gains labels
        return grown

    torch.manual_seed(0)
    model = build_model("unet", 2, width=4, depth=2)
    train_model(model, images, labels, TrainSettings(steps=8, batch_size=2, seed=0), IGNORE,
                torch.device("cpu"), progress=False, refresh=refresh, refresh_at=(0.5, 0.75))
    assert calls == [False, False]  # twice, in eval mode
    assert model.training
