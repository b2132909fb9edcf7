"""SAM backend: segment-anything's builders, the tiny variant, safe and checked loading."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from segment_anything.modeling import Sam

from segloop.errors import ConfigError, ModelNotFoundError
from segloop.models import sam as sam_mod
from segloop.models.sam import build_sam, load_sam, resolve_checkpoint


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_tiny_is_a_real_sam_seeded_and_in_eval_mode() -> None:
    a, b, c = build_sam("tiny", seed=1), build_sam("tiny", seed=1), build_sam("tiny", seed=2)
    assert isinstance(a, Sam) and not a.training
    assert _same_weights(a, b) and not _same_weights(a, c)
    # decoder tokens keep SAM's width: 4 mask tokens x 256 = the U-SAM 1024-vector
    assert a.mask_decoder.num_mask_tokens == 4 and a.mask_decoder.transformer_dim == 256
    assert a.image_encoder.img_size == 128


def test_seed_does_not_disturb_the_global_rng() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_sam("tiny", seed=5)
    assert torch.equal(torch.rand(3), expected)


def test_unknown_variant_names_the_choices() -> None:
    with pytest.raises(ConfigError, match="vit_b"):
        build_sam("vit_xl")


def test_released_variants_come_from_segment_anything_registry() -> None:
    from segment_anything.build_sam import sam_model_registry

    assert all(v in sam_model_registry for v in sam_mod.CHECKPOINT_FILES)


def test_checkpoint_round_trip_through_the_loader(tmp_path: Path) -> None:
    source = build_sam("tiny", seed=7)
    path = tmp_path / "tiny.pth"
    torch.save(source.state_dict(), path)
    sam = build_sam("tiny", seed=0)
    sam_mod.load_weights(sam, path, "tiny")
    assert _same_weights(sam, source)


def test_cpu_always_runs_float32() -> None:
    loaded = load_sam("tiny", device="cpu", dtype="float16")
    assert loaded.device.type == "cpu" and loaded.dtype == torch.float32
    assert next(loaded.model.parameters()).dtype == torch.float32
    assert loaded.checkpoint is None


def test_missing_checkpoint_names_model_path_and_download(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "sam_vit_b.pth"
    with pytest.raises(ModelNotFoundError) as err:
        load_sam("vit_b", str(missing))
    msg = str(err.value)
    assert "SAM vit_b" in msg and str(missing) in msg and "models.sam.checkpoint" in msg
    assert "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth" in msg


def test_env_variable_then_default_cache_are_searched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ckpt = tmp_path / "from-env.pth"
    ckpt.write_bytes(b"x")
    monkeypatch.setenv(sam_mod.CHECKPOINT_ENV, str(ckpt))
    assert resolve_checkpoint("vit_l", None) == ckpt
    monkeypatch.delenv(sam_mod.CHECKPOINT_ENV)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(ModelNotFoundError) as err:
        resolve_checkpoint("vit_h", None)
    assert str(tmp_path / ".cache/segloop/sam/sam_vit_h_4b8939.pth") in str(err.value)
    assert "$SEGLOOP_SAM_CHECKPOINT (unset)" in str(err.value)
    cached = tmp_path / ".cache/segloop/sam/sam_vit_h_4b8939.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"x")
    assert resolve_checkpoint("vit_h", None) == cached


def test_corrupt_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "truncated.pth"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ModelNotFoundError, match="truncated.pth cannot be read"):
        sam_mod.read_state_dict(bad, "vit_b")


class _Evil:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (print, ("pickled code ran",))


def test_pickled_code_is_refused_not_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "evil.pth"
    with path.open("wb") as fh:
        pickle.dump({"w": _Evil()}, fh)
    with pytest.raises(ModelNotFoundError, match="cannot be read"):
        sam_mod.read_state_dict(path, "vit_b")
    assert "pickled code ran" not in capsys.readouterr().out


def test_checkpoint_of_another_architecture_names_the_variant(tmp_path: Path) -> None:
    state = build_sam("tiny").state_dict()
    state.pop(next(iter(state)))
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "other.pth"
    torch.save(state, path)
    with pytest.raises(ModelNotFoundError, match="does not fit the tiny architecture"):
        sam_mod.load_weights(build_sam("tiny"), path, "tiny")
