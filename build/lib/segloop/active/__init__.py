"""Active learning: acquisition, regions, budgeted selection, the simulated annotator, the
pool and label state, scoring, and the loop steps run by ``flows/active_learning.py``."""
