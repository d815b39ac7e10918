"""Figures for the README's geometry section: similarity by offset inside coding reading frames for the
embedded models (and the sequence itself), and the Gram matrix of one coding window at the organism's layer 3.

    python scripts/geometry_figures.py

Writes docs/figures/geometry_offsets.png and docs/figures/geometry_gram.png.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("SEQCLAIMS_PROGRESS", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from seqclaims.inputs.datasets import build  # noqa: E402
from seqclaims.inputs.models import load_model  # noqa: E402
from seqclaims.methods import geometry as geo  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("organism", "organism@step0", "organism@step200", "organism-6mer", "planted")


def main() -> None:
    dataset = build({"dataset": "coding", "n": 800}, seed=0)
    runs = [geo.coding_run(p) for p in dataset.tracks["codon_phase"]]
    rows = [i for i in range(len(dataset)) if dataset.labels[i] == 1 and runs[i].sum() >= 60]
    sequences = [dataset.sequences[i] for i in rows]
    masks = [runs[i] for i in rows]
    fig, ax = plt.subplots(figsize=(7.2, 3.8))
    offsets = np.arange(1, 31)
    curves = {"sequence (one-hot bases)": geo.offset_profiles([geo.kmer_one_hot(s) for s in sequences], masks, 30)}
    example = None
    for name in MODELS:
        model = load_model(name)
        representations = geo.nucleotide_representations(model, sequences, "layer.3.resid_post"
                                                         if model.n_layers > 3 else "layer.1.resid_post",
                                                         geo.derived_hash(dataset.content_hash, "readme-coding"))
        curves[f"{name} layer {3 if model.n_layers > 3 else 1}"] = geo.offset_profiles(representations, masks, 30)
        if name == "organism":
            example = representations[0][masks[0]][:90]
    for label, profiles in curves.items():
        values = profiles.profiles
        ax.plot(offsets, np.nanmean(values, axis=0), marker=".", label=f"{label} (share {np.nanmean(profiles.share):.3f})")
    ax.set_xlabel("offset (bases) inside a coding reading frame")
    ax.set_ylabel("mean cosine similarity")
    ax.legend(fontsize=7)
    ax.set_title(f"Similarity by offset, {len(rows)} coding windows of TAIR10 chr1", fontsize=9)
    fig.tight_layout()
    fig.savefig(ROOT / "docs" / "figures" / "geometry_offsets.png", dpi=110)
    units = geo.unit_rows(example, np.ones(len(example), bool))
    fig, ax = plt.subplots(figsize=(4.4, 4.0))
    image = ax.imshow(units @ units.T, cmap="viridis", vmin=-1, vmax=1)
    fig.colorbar(image, ax=ax, label="cosine")
    ax.set_title("organism layer 3: Gram matrix of a reading frame", fontsize=9)
    fig.tight_layout()
    fig.savefig(ROOT / "docs" / "figures" / "geometry_gram.png", dpi=110)


if __name__ == "__main__":
    main()
