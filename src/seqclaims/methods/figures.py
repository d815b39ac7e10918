"""Figures for the report: PNG files in a content-addressed store, and figures drawn against a claim's
criteria.

A family's figure is a PNG file in `cache_dir()/figures/`, named by the sha256 of its bytes; results and
cached evidence refer to it by name, and the report copies the files it shows next to `index.html`. A
figure that marks the claim's thresholds (a layer x head heatmap with the threshold on its colour bar
and the passing heads outlined) is kept as a *recipe* (its data, no thresholds) and drawn when the claim
is judged, so that a threshold edit re-judges from cached evidence and still shows the new threshold.
Drawn recipes are stored under a key of the recipe and the criteria, so a warm rerun draws nothing.

`Figure` itself, the reference that results and the evidence store keep, is a value type of
`seqclaims.core.values` (re-exported here).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from seqclaims.core.values import Figure
from seqclaims.core.verdicts import PASS, interval_verdict
from seqclaims.fsutil import atomic_write_bytes
from seqclaims.paths import cache_dir

DPI = 110


def figure_from_matplotlib(fig: Any, title: str, caption: str = "") -> Figure:
    """A drawn figure: the matplotlib figure's PNG, put into the store (the figure is closed)."""
    return Figure(title, store_png(png_bytes(fig)), caption)


def figure_from_recipe(kind: str, title: str, caption: str, data: dict[str, Any]) -> Figure:
    """A figure kept as its data, drawn against the claim's criteria when it is judged (`draw_for_criteria`)."""
    if kind not in RENDERERS:
        raise ValueError(f"no renderer for figure kind {kind!r}; known: {', '.join(sorted(RENDERERS))}")
    return Figure(title, None, caption, {"kind": kind, "data": _plain(data)})


def figure_path(figure: Figure) -> Path | None:
    """Where a drawn figure's PNG lies in the store (None for a recipe)."""
    return store_dir() / figure.file if figure.file else None


def store_dir() -> Path:
    return cache_dir() / "figures"


def png_bytes(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def store_png(data: bytes, name: str | None = None) -> str:
    """Put PNG bytes into the store (under `name`, default their sha256) and return the file name."""
    name = name or f"{hashlib.sha256(data).hexdigest()}.png"
    target = store_dir() / name
    if not target.is_file():
        atomic_write_bytes(target, data)
    return name


def is_stored(figure: Figure) -> bool:
    """A drawn figure whose file is in the store, or a recipe (drawn on demand)."""
    return figure.recipe is not None or (figure.file is not None and (store_dir() / figure.file).is_file())


def copy_into(figures: Sequence[Figure], folder: Path) -> None:
    """Copy the figures' files from the store into `folder` (a hard link where the file system allows)."""
    folder.mkdir(parents=True, exist_ok=True)
    for figure in figures:
        source, target = figure_path(figure), folder / str(figure.file)
        if source is None or not source.is_file() or target.is_file():
            continue
        try:
            target.hardlink_to(source)
        except FileExistsError:  # another process linked it first
            continue
        except OSError:
            shutil.copyfile(source, target)


# ---------------------------------------------------------------------------------------------
# Recipes: figures drawn against the claim's criteria when it is judged


Renderer = Callable[[dict[str, Any], Sequence[Any]], tuple[Any, str]]
RENDERERS: dict[str, Renderer] = {}


def draw_for_criteria(figure: Figure, criteria: Sequence[Any]) -> Figure:
    """A recipe drawn against `criteria` (objects with statistic, op, threshold), from the store when it
    was drawn before; a figure that is not a recipe is returned as it is."""
    if figure.recipe is None:
        return figure
    relevant = [(c.statistic, c.op, c.threshold) for c in criteria]
    key = hashlib.sha256(json.dumps([figure.recipe, figure.caption, relevant], sort_keys=True).encode()).hexdigest()
    name = f"recipe-{key}.png"
    caption_file = store_dir() / f"recipe-{key}.caption"
    if (store_dir() / name).is_file() and caption_file.is_file():
        return replace(figure, file=name, recipe=None, caption=caption_file.read_text(encoding="utf-8"))
    fig, extra = RENDERERS[figure.recipe["kind"]](figure.recipe["data"], criteria)
    caption = " ".join(part for part in (figure.caption, extra) if part)
    store_png(png_bytes(fig), name)
    atomic_write_bytes(caption_file, caption.encode("utf-8"))
    return replace(figure, file=name, recipe=None, caption=caption)


def _plain(value: Any) -> Any:
    """JSON-ready: arrays to nested lists, NaN to None."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def _grid(values: Any) -> np.ndarray:
    return np.array([[np.nan if v is None else v for v in row] for row in values], dtype=float)


# ---------------------------------------------------------------------------------------------
# Layer x head heatmaps


@dataclass(frozen=True)
class HeadMarks:
    """What the claim's criteria mark on a head heatmap: the threshold of the first criterion on one of
    `statistics` on the colour bar, and outlined the heads whose interval [low, high] passes every
    criterion on `statistics` (and, with `p`, whose p is below the threshold of a criterion on
    `p_statistics`). low, high, p: (n_layers, n_heads) grids, NaN where no head was tested."""

    statistics: tuple[str, ...]
    low: np.ndarray | None = None
    high: np.ndarray | None = None
    p: np.ndarray | None = None
    p_statistics: tuple[str, ...] = ()


def head_heatmap(values: np.ndarray, *, title: str, label: str, caption: str = "", log2: bool = False,
                 marks: HeadMarks | None = None) -> Figure:
    """A layer x head heatmap (values: (n_layers, n_heads)), drawn when the claim is judged."""
    data = {"values": values, "label": label, "log2": log2, "title": title,
            "marks": None if marks is None else {"statistics": list(marks.statistics), "low": marks.low,
                                                 "high": marks.high, "p": marks.p,
                                                 "p_statistics": list(marks.p_statistics)}}
    return figure_from_recipe("head_heatmap", title, caption, data)


def criterion_threshold(criteria: Sequence[Any], statistics: Sequence[str]) -> float | None:
    """The threshold of the first criterion on one of `statistics`, if any."""
    return next((c.threshold for c in criteria if c.statistic in statistics), None)


def criterion_passes(criteria: Sequence[Any], statistics: Sequence[str], low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """bool, shaped like `low`: items whose interval passes every criterion on `statistics`."""
    passing = np.ones(np.shape(low), dtype=bool)
    for criterion in criteria:
        if criterion.statistic in statistics:
            passing &= np.array([interval_verdict(lo, hi, criterion.op, criterion.threshold) == PASS
                                 for lo, hi in zip(np.ravel(low), np.ravel(high))]).reshape(np.shape(low))
    return passing


def _render_head_heatmap(data: dict[str, Any], criteria: Sequence[Any]) -> tuple[Any, str]:
    values = _grid(data["values"])
    marks = data["marks"]
    threshold = criterion_threshold(criteria, marks["statistics"]) if marks else None
    p_threshold = criterion_threshold(criteria, marks["p_statistics"]) if marks else None
    by_interval = threshold is not None and marks["low"] is not None
    by_p = p_threshold is not None and marks["p"] is not None
    passing = np.full(values.shape, by_interval or by_p)
    if by_interval:
        passing &= criterion_passes(criteria, marks["statistics"], _grid(marks["low"]), _grid(marks["high"]))
    if by_p:
        passing &= np.nan_to_num(_grid(marks["p"]), nan=1.0) < p_threshold
    extra = ""
    if by_interval or by_p:
        tests = [*(["interval passes the claim's criterion"] if by_interval else []),
                 *(["corrected p is below its threshold"] if by_p else [])]
        extra = f"Outlined: heads whose {' and whose '.join(tests)}."
    if threshold is not None:
        extra += " The bar marks the threshold."
    return _draw_heatmap(values, data["title"], data["label"], data["log2"], threshold, passing), extra.strip()


def _draw_heatmap(values: np.ndarray, title: str, label: str, log2: bool, threshold: float | None,
                  passing: np.ndarray) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    with np.errstate(invalid="ignore", divide="ignore"):
        shown = np.log2(np.where(values > 0, values, np.nan)) if log2 else values
    n_layers, n_heads = values.shape
    fig, ax = plt.subplots(figsize=(1.2 + 0.6 * n_heads, 1.0 + 0.45 * n_layers))
    finite = shown[np.isfinite(shown)]
    bound = max(float(np.abs(finite).max()) if finite.size else 1.0, abs(_on_scale(threshold, log2) or 0.0), 1e-9)
    image = ax.imshow(shown, cmap="RdBu_r", vmin=-bound, vmax=bound, aspect="auto")
    bar = fig.colorbar(image, ax=ax, label=f"log2 {label}" if log2 else label)
    if threshold is not None:
        bar.ax.axhline(_on_scale(threshold, log2), color="black", linewidth=2)
    for layer, head in zip(*np.nonzero(passing)):
        ax.add_patch(Rectangle((head - 0.5, layer - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=2.5))
    for layer, head in np.ndindex(values.shape):
        if np.isfinite(values[layer, head]):
            dark = abs(shown[layer, head]) > 0.6 * bound
            ax.text(head, layer, f"{values[layer, head]:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if dark else "black")
    ax.set_xticks(range(n_heads))
    ax.set_yticks(range(n_layers))
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_title(title, fontsize=9)
    return fig


def _on_scale(value: float | None, log2: bool) -> float | None:
    if value is None:
        return None
    return math.log2(value) if log2 and value > 0 else value


RENDERERS["head_heatmap"] = _render_head_heatmap


# ---------------------------------------------------------------------------------------------
# Circuit graphs: a static drawing (the interactive one is the report's, from Figure.graph)


def circuit_graph(title: str, caption: str, nodes: list[dict[str, Any]], edges: list[dict[str, Any]]) -> Figure:
    """A graph of latents (nodes: id, layer, latent, score, windows) and weighted edges (source, target,
    weight): a PNG drawn at judging time, and the same data for the report's interactive viewer."""
    data = {"nodes": nodes, "edges": edges}
    return replace(figure_from_recipe("circuit_graph", title, caption, data), graph=_plain(data))


def circuit_positions(nodes: Sequence[dict[str, Any]]) -> dict[str, tuple[float, float]]:
    """Layered layout: one column per layer, nodes of a layer spread evenly top to bottom."""
    layers = sorted({node["layer"] for node in nodes})
    positions = {}
    for column, layer in enumerate(layers):
        members = [node for node in nodes if node["layer"] == layer]
        for row, node in enumerate(members):
            positions[node["id"]] = (float(column), float(row - (len(members) - 1) / 2))
    return positions


def _render_circuit_graph(data: dict[str, Any], criteria: Sequence[Any]) -> tuple[Any, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nodes, edges = data["nodes"], data["edges"]
    where = circuit_positions(nodes)
    largest = max([abs(e["weight"] or 0.0) for e in edges] or [1.0]) or 1.0
    biggest = max([abs(n["score"] or 0.0) for n in nodes] or [1.0]) or 1.0
    fig, ax = plt.subplots(figsize=(1.8 + 2.2 * len({n["layer"] for n in nodes}), 0.9 + 0.55 * max(
        [sum(1 for m in nodes if m["layer"] == n["layer"]) for n in nodes] or [1])))
    for edge in edges:
        (x0, y0), (x1, y1) = where[edge["source"]], where[edge["target"]]
        weight = edge["weight"] or 0.0
        ax.plot([x0, x1], [y0, y1], color="#cf222e" if weight < 0 else "#0969da",
                linewidth=0.3 + 4 * abs(weight) / largest, alpha=0.7, zorder=1)
    for node in nodes:
        x, y = where[node["id"]]
        ax.scatter([x], [y], s=80 + 600 * abs(node["score"] or 0.0) / biggest, color="#1a7f37", zorder=2)
        ax.annotate(node["id"], (x, y), textcoords="offset points", xytext=(0, 9), ha="center", fontsize=7)
    ax.set_axis_off()
    ax.margins(0.25)
    return fig, ""


RENDERERS["circuit_graph"] = _render_circuit_graph
