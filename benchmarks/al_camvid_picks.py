"""Where do the acquisition strategies look? From the seed-0 random start of the image-level
protocol (7 images, LR-ASPP 1000 steps), the 30 top-scored pool images per strategy, counted by
CamVid video sequence, with the first names (sorted) to show runs of consecutive frames.

    .venv/bin/python benchmarks/al_camvid_picks.py      # ~2 min on 2 cores
"""
from collections import Counter
from pathlib import Path

import torch

from segloop.active.loop import simulated_labels
from segloop.active.pool import Pool
from segloop.active.scoring import candidate_units_random, score_pool
from segloop.active.selection import Budget, select
from segloop.active.state import LabelState
from segloop.data.classes import CAMVID
from segloop.data.datasets import CamVidLayout
from segloop.train.arrays import stack_split
from segloop.train.loop import TrainSettings, train_model
from segloop.train.models import build_model

root = str(Path(__file__).resolve().parents[2] / "shared/datasets/camvid")
arr = stack_split(CamVidLayout(root, "train", CAMVID), (96, 128))
pool = Pool(arr, (), None, None)
state = LabelState.empty(pool, 11)
gen = torch.Generator().manual_seed(0)
units = candidate_units_random(pool, state, "image", gen)
sel = select(units, Budget(units=7))
for i, lab in simulated_labels(pool, sel, "exact", 11).items():
    state.apply(pool, i, [-1], lab)
print("start:", Counter(arr.names[u.image_index].split("_")[0] for u in sel.units))
torch.manual_seed(0)
m = build_model("lraspp", 11)
train_model(m, arr.images, state.labels, TrainSettings(steps=1000, seed=0),
            11, torch.device("cpu"), progress=False)
for strat in ("entropy", "uig", "bald", "random"):
    us = score_pool(m, pool, state, strat, "image", torch.device("cpu"), round_number=1,
                    seed=0, progress=False)
    top = select(us, Budget(units=30))
    names = [arr.names[u.image_index] for u in top.units]
    print(strat, Counter(n.split("_")[0] for n in names), sorted(names)[:10])
