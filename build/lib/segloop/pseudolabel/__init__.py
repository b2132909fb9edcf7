"""Pseudo-labels and seeds from SAM mask embeddings (ALGORITHMS.md section 2)."""
