#!/usr/bin/python3
"""Turns expert_counts.json into an eplb HDF5 snapshot (olmoe_domains.h5), one window per domain.

Also an example of eplb's HDF5 snapshot layout written with h5py:
  logical_count  int64 [windows, layers, experts]
  attributes     layer_ids (model layer of each row), num_model_layers, model, checkpoint

    cd jobs/data/olmoe-domains && /usr/bin/python3 make_snapshot.py
"""
import json

import h5py
import numpy as np

DOMAINS = ["arxiv", "book", "c4", "github", "wikipedia", "tulu"]

with open("expert_counts.json") as f:
    data = json.load(f)
counts = data["olmoe"]["expert_counts"]
logical_count = np.array([counts[d] for d in DOMAINS], dtype=np.int64)  # [6, 3, 64]

with h5py.File("olmoe_domains.h5", "w", track_order=False) as out:
    ds = out.create_dataset("logical_count", data=logical_count)
    ds.attrs["axes"] = "window (domain), moe_layer, logical_expert"
    out.attrs["layer_ids"] = np.array(data["_layers"], dtype=np.int64)
    out.attrs["num_model_layers"] = np.int64(16)
    out.attrs["model"] = "OLMoE-1B-7B (allenai/OLMoE), 16 MoE layers x 64 experts, top-8"
    out.attrs["checkpoint"] = "olmoe (pretrained)"
    out.attrs["windows"] = ",".join(DOMAINS)
