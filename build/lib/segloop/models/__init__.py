"""Model backends: builders plus registries, architecture apart from weight loading."""

from segloop.models.sam import LoadedSam, build_sam, load_sam

__all__ = ["LoadedSam", "build_sam", "load_sam"]
