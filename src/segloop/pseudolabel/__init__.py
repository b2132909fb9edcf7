"""Pseudo-labels and seeds from SAM mask embeddings (U-SAM; docs/algorithms.md §2)."""
