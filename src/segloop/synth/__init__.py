"""Synthetic images of user-named classes with Stable Diffusion (U-SAM;
docs/algorithms.md §2, step 1)."""
