from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from segloop.config import TrainConfig
from segloop.errors import DataError, ModelNotFoundError
from segloop.train.arrays import augment
from segloop.train.checkpoint import load_checkpoint, read_meta, save_checkpoint
from segloop.train.factory import class_weights
from segloop.train.loop import (
    TrainSettings,
    evaluate,
    iter_probs,
    segmentation_loss,
    train_model,
)
from segloop.train.metrics import confusion_matrix, metrics_from_confusion
from segloop.train.models import MODELS, build_model

IGNORE = 11
CPU = torch.device("cpu")


def test_confusion_matrix_and_miou_by_hand() -> None:
    target = torch.tensor([[0, 0, 1, 1, IGNORE]])
    pred = torch.tensor([[0, 1, 1, 1, 0]])
    cm = confusion_matrix(pred, target, 3, IGNORE)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [0, 0, 0]]
    m = metrics_from_confusion(cm, ("a", "b", "c"))
    # IoU a = 1 / (1 + 1 + 0) = 0.5 ; IoU b = 2 / (2 + 1) = 2/3 ; c absent -> NaN, not averaged
    assert m.iou[0] == pytest.approx(0.5) and m.iou[1] == pytest.approx(2 / 3)
    assert np.isnan(m.iou[2])
    assert m.miou == pytest.approx((0.5 + 2 / 3) / 2)
    assert m.pixel_accuracy == pytest.approx(3 / 4)
    assert m.to_dict()["iou"]["c"] is None


def test_loss_ignores_unlabelled_pixels() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 5, 6, requires_grad=True)
    labels = torch.randint(0, 4, (2, 5, 6))
    labels[:, :, 3:] = IGNORE  # right half unlabelled (a region-level round)
    loss = segmentation_loss(logits, labels, IGNORE)
    by_hand = F.cross_entropy(logits[..., :3], labels[..., :3])
    assert loss.item() == pytest.approx(by_hand.item(), rel=1e-6)
    loss.backward()
    assert torch.all(logits.grad[..., 3:] == 0)
    assert torch.any(logits.grad[..., :3] != 0)
    empty = torch.full((2, 5, 6), IGNORE)
    zero = segmentation_loss(logits, empty, IGNORE)
    assert zero.item() == 0.0 and zero.requires_grad


def test_balanced_seed_loss_is_chosen_by_the_settings() -> None:
    torch.manual_seed(0)
    logits = torch.randn(1, 3, 2, 2)
    seeds = torch.tensor([[[0, 0], [0, 2]]])  # 3 background pixels, 1 foreground
    balanced = TrainSettings(loss="balanced_seed", seed_background=0)
    ce = F.cross_entropy(logits, seeds, reduction="none")[0]
    by_hand = ce.flatten()[:3].mean() + ce.flatten()[3]  # each group averaged apart
    got = segmentation_loss(logits, seeds, IGNORE, None, balanced)
    assert got.item() == pytest.approx(by_hand.item(), rel=1e-6)
    plain = segmentation_loss(logits, seeds, IGNORE, None, TrainSettings())
    assert plain.item() == pytest.approx(ce.mean().item(), rel=1e-6)


def test_partial_labels_train_only_where_labelled() -> None:
    """A region-level round labels part of an image: the rest is ignore and must not pull
    the model. Both halves look alike; only the left is labelled (class 1); the model
    learns class 1 and predicts it on the unlabelled right half too."""
    gen = torch.Generator().manual_seed(0)
    half = torch.randint(0, 256, (4, 3, 16, 8), generator=gen, dtype=torch.uint8)
    images = torch.cat([half, half], dim=3)
    labels = torch.ones(4, 16, 16, dtype=torch.uint8)
    labels[:, :, 8:] = IGNORE
    torch.manual_seed(0)
    model = build_model("unet", 2, width=4, depth=2, dropout=0.0)
    train_model(model, images, labels, TrainSettings(steps=40, batch_size=4, lr=1e-2,
                                                    scale=(1.0, 1.0), flip=False),
                IGNORE, CPU, progress=False)
    _, probs = next(iter_probs(model, images, CPU))
    assert (probs.argmax(1)[..., 8:] == 1).float().mean() > 0.95


def test_training_needs_a_labelled_pixel_and_is_seeded() -> None:
    images = torch.randint(0, 255, (3, 3, 8, 8), dtype=torch.uint8)
    with pytest.raises(ValueError, match="no image has a labelled pixel"):
        train_model(build_model("unet", 3, width=4, depth=1), images,
                    torch.full((3, 8, 8), IGNORE, dtype=torch.uint8),
                    TrainSettings(steps=1), IGNORE, CPU, progress=False)
    labels = torch.randint(0, 3, (3, 8, 8), dtype=torch.uint8)
    runs = []
    for _ in range(2):
        torch.manual_seed(5)
        m = build_model("unet", 3, width=4, depth=1)
        runs.append(train_model(m, images, labels, TrainSettings(steps=3, batch_size=2),
                                IGNORE, CPU, progress=False))
    assert runs[0] == runs[1]


def test_augment_keeps_shapes_and_pads_with_ignore() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 12, 16)
    y = torch.randint(0, 3, (2, 12, 16))
    for scale in ((0.5, 0.5), (1.5, 1.5)):
        ax, ay = augment(x, y, gen, scale, True, IGNORE)
        assert ax.shape == x.shape and ay.shape == y.shape and ay.dtype == torch.long
    _, ay = augment(x, y, gen, (0.5, 0.5), False, IGNORE)
    assert (ay[:, 6:, :] == IGNORE).all() and (ay[:, :, 8:] == IGNORE).all()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_maps_images_to_logits(name: str) -> None:
    model = build_model(name, 5, width=4, depth=2).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 40, 56))
    assert out.shape == (1, 5, 40, 56)
    assert any(isinstance(m, torch.nn.Dropout2d) for m in model.modules())  # MC dropout


def test_pretrained_weights_missing_say_where(monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(ModelNotFoundError, match=str(tmp_path)):
        build_model("lraspp", 3, pretrained=True)
    with pytest.raises(ModelNotFoundError, match="no pretrained weights"):
        build_model("unet", 3, pretrained=True)
    with pytest.raises(ModelNotFoundError, match="unknown model"):
        build_model("segformer", 3)


def test_checkpoint_round_trip_and_mismatch(tmp_path: Path) -> None:
    model = build_model("unet", 3, width=4, depth=2)
    path = save_checkpoint(model, tmp_path / "m.safetensors", {"recipe": {"width": 4}})
    assert read_meta(path) == {"recipe": {"width": 4}}
    other = build_model("unet", 3, width=4, depth=2)
    load_checkpoint(other, path)
    for a, b in zip(model.state_dict().values(), other.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(DataError, match="does not fit the configured model"):
        load_checkpoint(build_model("unet", 3, width=8, depth=2), path)
    assert not list(tmp_path.glob(".*tmp*"))


def test_evaluate_perfect_model_scores_one() -> None:
    class Oracle(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:  # class = (red > 0.5)
            return torch.cat([(x[:, :1] <= 0.5).float(), (x[:, :1] > 0.5).float()], 1) * 10

    images = torch.zeros(3, 3, 4, 4, dtype=torch.uint8)
    images[:, 0, :, 2:] = 255
    labels = (images[:, 0] > 127).to(torch.uint8)
    labels[:, 0, 0] = IGNORE
    m = evaluate(Oracle(), images, labels, ("a", "b"), IGNORE, CPU)
    assert m.miou == 1.0


def test_class_weights() -> None:
    labels = torch.tensor([[[0, 0, 0, 1], [IGNORE, 0, 0, 0]]], dtype=torch.uint8)
    assert class_weights(TrainConfig(), labels, 3, IGNORE) is None
    w = class_weights(TrainConfig(class_weights="inverse_sqrt"), labels, 3, IGNORE)
    assert w is not None and w[1] > w[0] and w[2] == 1.0
    assert class_weights(TrainConfig(class_weights=(1.0, 2.0, 3.0)), labels, 3,
                         IGNORE) == (1.0, 2.0, 3.0)
