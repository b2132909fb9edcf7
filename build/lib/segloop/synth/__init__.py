"""Synthetic images of user-named classes with Stable Diffusion (ALGORITHMS.md section 2)."""
