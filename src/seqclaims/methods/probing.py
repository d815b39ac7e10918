"""Linear probes on pooled activations, and the sequence-only baselines they are compared with.

The probe is an L2-regularised logistic regression on standardised features whose strength C is
chosen by inner cross-validation on the training rows only (mean held-out-fold AUROC over a grid;
ties go to the stronger regularisation). Folds are blocks of consecutive windows along the genome
when coordinates exist, so neighbouring windows do not sit on both sides of a fold boundary more
than once per fold; without coordinates they are stratified at random.

Public API (scikit-learn naming):

- :class:`LinearProbe` ``.fit(X, y, folds=None)``, ``.decision_function(X)``, ``.predict_proba(X)``,
  ``.predict(X)``, ``.score(X, y)``; fitted ``coef_`` (d,) and ``intercept_`` in the *original*
  feature coordinates (the standardisation folded in), ``direction`` (unit ``coef_``), ``C_``,
  ``cv_auroc_`` (n_C,), ``oof_decision_`` (n,) held-out-fold decision values at ``C_``.
- :func:`fit_probe` a fitted :class:`LinearProbe` in one call.
- :func:`train_split_probe` the family's probe for one hook of a claim's inputs, fitted on the
  dataset's train split with genomic-block folds (what activation patching and OV alignment read).
- Features: :func:`composition_features` (GC fraction, GC skew, length), :func:`kmer_frequencies`,
  :func:`position_features`; :func:`pooled_activations` (mean / cls from the shared activation
  cache, or the token covering a given character position).
- :func:`gc_matched_pairs` nearest-neighbour GC matching with a caliper; :func:`fit_suite` every fit
  the probe family needs, cached on disk by content.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from threadpoolctl import threadpool_limits

from seqclaims.code_keys import code_digest
from seqclaims.errors import InputError
from seqclaims.fsutil import pickled
from seqclaims.inputs.cache import extract
from seqclaims.inputs.models import iter_run
from seqclaims.methods.weighted import auroc_weighted
from seqclaims.paths import cache_dir

DEFAULT_C_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)
DEFAULT_FOLDS = 5
MAX_ITER = 2000
SUITE_VERSION = 1
CODE_VERSION = code_digest(__name__)  # the probe-fit and pooled-activation caches key on this code

_CODE_OF_BYTE = np.full(256, -1, dtype=np.int64)
for _code, _base in enumerate(b"ACGT"):
    _CODE_OF_BYTE[_base] = _code
    _CODE_OF_BYTE[_base + 32] = _code


# ---------------------------------------------------------------------------------------------
# The probe


@dataclass
class LinearProbe:
    """Standardise, then L2 logistic regression with C chosen by inner cross-validation.

    ``fit(X (n, d), y (n,), folds=None)``: ``folds`` (n,) int assigns every row to an inner fold
    (default: stratified random folds from ``random_state``). ``C`` fixes the strength and skips the
    search (``oof_decision_`` is then not computed).
    """

    c_grid: Sequence[float] = DEFAULT_C_GRID
    n_folds: int = DEFAULT_FOLDS
    random_state: int = 0
    C: float | None = None
    C_: float = field(default=float("nan"), init=False)
    cv_auroc_: np.ndarray = field(default_factory=lambda: np.zeros(0), init=False)
    oof_decision_: np.ndarray = field(default_factory=lambda: np.zeros(0), init=False)
    coef_: np.ndarray = field(default_factory=lambda: np.zeros(0), init=False)
    intercept_: float = field(default=float("nan"), init=False)
    pattern_: np.ndarray = field(default_factory=lambda: np.zeros(0), init=False)

    def fit(self, X: np.ndarray, y: np.ndarray, folds: np.ndarray | None = None) -> "LinearProbe":
        with threadpool_limits(limits=1):  # small problems: extra BLAS threads only contend
            return self._fit(_as_features(X), _as_binary(y), folds)

    def _fit(self, X: np.ndarray, y: np.ndarray, folds: np.ndarray | None) -> "LinearProbe":
        if self.C is not None:
            self.C_ = float(self.C)
        else:
            folds = stratified_folds(y, self.n_folds, self.random_state) if folds is None else np.asarray(folds)
            self.cv_auroc_, oof = _cross_validate(X, y, folds, tuple(self.c_grid))
            best = int(np.nanargmax(np.where(np.isnan(self.cv_auroc_), -np.inf, self.cv_auroc_)))
            self.C_, self.oof_decision_ = float(self.c_grid[best]), oof[best]
        self.coef_, self.intercept_ = _fit_original_coordinates(X, y, self.C_)
        self.pattern_ = activation_pattern(X, self.coef_)
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """(n,) logit of label 1 for rows of X (n, d)."""
        return _as_features(X) @ self.coef_ + self.intercept_

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """(n,) probability of label 1."""
        return 1.0 / (1.0 + np.exp(-self.decision_function(X)))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """(n,) int predicted labels (decision > 0)."""
        return (self.decision_function(X) > 0).astype(np.int64)

    def score(self, X: np.ndarray, y: np.ndarray) -> float:
        """AUROC of the decision values against y."""

        return float(auroc_weighted(self.decision_function(X), _as_binary(y).astype(bool))[0])

    @property
    def direction(self) -> np.ndarray:
        """(d,) unit vector along ``coef_``: the probe's direction in the original activation space."""
        norm = np.linalg.norm(self.coef_)
        return self.coef_ / norm if norm > 0 else self.coef_


def activation_pattern(X: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """(d,) activation pattern of a linear decoder (Haufe et al. 2014): Cov(X) coef / Var(X coef).

    The direction along which the decoded signal varies in the activations, as opposed to the filter
    `coef`, which also cancels noise and gives large weights to low-variance dimensions. X: (n, d)."""
    centred = X - X.mean(axis=0)
    projected = centred @ coef
    variance = projected.var()
    return centred.T @ projected / len(X) / variance if variance > 0 else np.zeros_like(coef)


def fit_probe(X: np.ndarray, y: np.ndarray, *, folds: np.ndarray | None = None, seed: int = 0,
              c_grid: Sequence[float] = DEFAULT_C_GRID, n_folds: int = DEFAULT_FOLDS,
              C: float | None = None) -> LinearProbe:
    """A :class:`LinearProbe` fitted on X (n, d) and binary y (n,)."""
    return LinearProbe(c_grid=tuple(c_grid), n_folds=n_folds, random_state=seed, C=C).fit(X, y, folds)


def train_split_probe(inputs: Any, hook: str, *, pooling: str = "mean", position: int | None = None,
                      seed: int = 0, c_grid: Sequence[float] = DEFAULT_C_GRID,
                      n_folds: int = DEFAULT_FOLDS) -> LinearProbe:
    """The probe family's probe for `hook` (e.g. ``layer.3.resid_post``) of a claim's inputs.

    inputs: ``judging.claim_inputs.ClaimInputs`` (model and dataset). Fitted on the pooled activations of the
    dataset's train split with genomic-block inner folds; ``coef_`` (d_model,) is the direction in
    the residual space, ``decision_function`` takes pooled activations (n, d_model).
    """
    dataset = inputs.dataset
    hooks = probe_hooks(inputs.model)  # every site, so that the extraction is the one the family caches
    if hook not in hooks:
        raise InputError(f"{hook!r} is not a probe site of this model; probe sites: {', '.join(hooks)}")
    pooled, _ = pooled_activations(inputs.model, dataset.sequences, dataset.content_hash, hooks, pooling, position)
    train = dataset.indices("train")
    labels = np.asarray(dataset.labels)[train]
    folds = genomic_block_folds(labels, _take_coords(dataset.coords, train), n_folds, seed)
    return fit_probe(pooled[hook][train], labels, folds=folds, seed=seed, c_grid=c_grid, n_folds=n_folds)


def _as_features(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    return X[:, None] if X.ndim == 1 else X


def _as_binary(y: np.ndarray) -> np.ndarray:
    y = np.asarray(y)
    if not np.isin(y, (0, 1)).all():
        raise InputError(f"a probe needs binary labels 0/1; found {sorted(set(np.unique(y).tolist()) - {0, 1})[:5]}")
    return y.astype(np.int64)


def _standardiser(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column means and scales (constant columns get scale 1, as scikit-learn's StandardScaler)."""
    mean = X.mean(axis=0)
    scale = X.std(axis=0)
    return mean, np.where(scale > 1e-12 * np.maximum(1.0, np.abs(mean)), scale, 1.0)


def _logistic(C: float, warm_start: bool = False):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=C, max_iter=MAX_ITER, warm_start=warm_start)


def _fit_quietly(model, X: np.ndarray, y: np.ndarray):
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # weak regularisation on separable data
        return model.fit(X, y)


def _fit_original_coordinates(X: np.ndarray, y: np.ndarray, C: float) -> tuple[np.ndarray, float]:
    """Fit on standardised X, then fold the standardisation into (coef (d,), intercept)."""
    mean, scale = _standardiser(X)
    model = _fit_quietly(_logistic(C), (X - mean) / scale, y)
    coef = model.coef_[0] / scale
    return coef, float(model.intercept_[0] - coef @ mean)


def _cross_validate(X: np.ndarray, y: np.ndarray, folds: np.ndarray,
                    c_grid: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Mean held-out-fold AUROC per C (n_C,) and held-out decision values per C (n_C, n).

    Standardisation is fitted on each fold's training rows; the C path is warm-started in each fold.
    A fold whose held-out rows lack a class contributes no AUROC.
    """

    oof = np.zeros((len(c_grid), len(y)))
    scores = np.full((len(c_grid), int(folds.max()) + 1), np.nan)
    for fold in np.unique(folds):
        held, kept = folds == fold, folds != fold
        if len(np.unique(y[kept])) < 2:
            continue
        mean, scale = _standardiser(X[kept])
        model = _logistic(c_grid[0], warm_start=True)
        for index, C in enumerate(c_grid):
            model.set_params(C=C)
            _fit_quietly(model, (X[kept] - mean) / scale, y[kept])
            oof[index, held] = model.decision_function((X[held] - mean) / scale)
            if len(np.unique(y[held])) == 2:
                scores[index, fold] = auroc_weighted(oof[index, held], y[held].astype(bool))[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a grid row with no scored fold
        return np.nanmean(scores, axis=1), oof


# ---------------------------------------------------------------------------------------------
# Inner folds


def stratified_folds(labels: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """(n,) fold index: each class dealt round-robin over the folds in a random order."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    folds = np.zeros(len(labels), dtype=np.int64)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        folds[members] = np.arange(len(members)) % n_folds
    return folds


def genomic_block_folds(labels: np.ndarray, coords: Any | None, n_folds: int, seed: int) -> np.ndarray:
    """(n,) fold index: consecutive blocks of windows ordered by (chromosome, start), so that windows of
    one genomic neighbourhood share a fold. Falls back to :func:`stratified_folds` without coordinates,
    or when a block would lack a class."""
    labels = np.asarray(labels)
    n_folds = max(2, min(n_folds, int(np.bincount(labels, minlength=2).min()) if len(labels) else 2))
    if coords is None or len(labels) < n_folds:
        return stratified_folds(labels, n_folds, seed)
    order = np.lexsort((np.asarray(coords.start), np.asarray(coords.chrom)))
    folds = np.empty(len(labels), dtype=np.int64)
    folds[order] = np.arange(len(labels)) * n_folds // len(labels)
    for fold in range(n_folds):
        if len(np.unique(labels[folds == fold])) < 2 or len(np.unique(labels[folds != fold])) < 2:
            return stratified_folds(labels, n_folds, seed)
    return folds


def _take_coords(coords: Any | None, rows: np.ndarray) -> Any | None:
    return None if coords is None else coords.take(rows)


# ---------------------------------------------------------------------------------------------
# Sequence-only features


def _codes(sequences: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Nucleotide codes of all sequences joined (A=0, C=1, G=2, T=3, else -1) and each one's row.

    Returns (total,) int64 codes and (total,) int64 row index."""
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    joined = "".join(sequences).encode("ascii", "replace")
    codes = _CODE_OF_BYTE[np.frombuffer(joined, dtype=np.uint8)]
    return codes, np.repeat(np.arange(len(sequences)), lengths)


def gc_fraction(sequences: Sequence[str]) -> np.ndarray:
    """(n,) G+C over A+C+G+T of each sequence (NaN without any ACGT)."""
    return composition_features(sequences)[:, 0]


def composition_features(sequences: Sequence[str]) -> np.ndarray:
    """(n, 3): GC fraction (G+C)/(A+C+G+T), GC skew (G-C)/(G+C) (0 without G or C), length in nt."""
    codes, row = _codes(sequences)
    counts = np.zeros((len(sequences), 5))
    np.add.at(counts, (row, codes + 1), 1.0)  # column 0 counts non-ACGT symbols
    acgt = counts[:, 1:].sum(axis=1)
    c, g = counts[:, 2], counts[:, 3]
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = np.where(acgt > 0, (g + c) / acgt, np.nan)
        skew = np.where(g + c > 0, (g - c) / (g + c), 0.0)
    return np.stack([fraction, skew, counts.sum(axis=1)], axis=1)


def kmer_frequencies(sequences: Sequence[str], k: int) -> np.ndarray:
    """(n, 4**k) frequency of every k-mer (read strand, overlapping) among each sequence's ACGT-only k-mers.

    Column index: sum over j of code[i + j] * 4**(k - 1 - j) with A=0, C=1, G=2, T=3."""
    if not 1 <= k <= 8:
        raise InputError(f"kmer_k must be between 1 and 8, not {k}")
    codes, row = _codes(sequences)
    n = len(codes) - k + 1
    counts = np.zeros((len(sequences), 4**k))
    if n <= 0:
        return counts
    windows = np.lib.stride_tricks.sliding_window_view(codes, k)
    valid = (windows >= 0).all(axis=1) & (row[:n] == row[k - 1:])  # inside one sequence, ACGT only
    index = windows[valid] @ (4 ** np.arange(k - 1, -1, -1))
    np.add.at(counts, (row[:n][valid], index), 1.0)
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


def position_features(coords: Any | None) -> np.ndarray | None:
    """(n, 2 + n_chromosomes) genomic metadata: window start in Mb, strand (+1/-1), chromosome one-hot.

    None without coordinates."""
    if coords is None or len(coords) == 0:
        return None
    chroms = np.unique(coords.chrom)
    one_hot = (np.asarray(coords.chrom)[:, None] == chroms[None, :]).astype(np.float64)
    strand = np.where(np.asarray(coords.strand) == "-", -1.0, 1.0)
    return np.column_stack([np.asarray(coords.start) / 1e6, strand, one_hot])


# ---------------------------------------------------------------------------------------------
# Pooled activations


POOLINGS = ("mean", "cls", "position")


def probe_hooks(model: Any) -> list[str]:
    """Every pooled site a probe can read: ``embed`` (when the model offers it) and each block's output."""
    names = set(model.hook_names())
    return [*(["embed"] if "embed" in names else []), *(f"layer.{l}.resid_post" for l in range(model.n_layers))]


def layer_number(hook: str) -> int:
    """-1 for ``embed``, l for ``layer.{l}.resid_post``."""
    return -1 if hook == "embed" else int(hook.split(".")[1])


def pooled_activations(model: Any, sequences: Sequence[str], dataset_hash: str, hooks: Sequence[str],
                       pooling: str = "mean", position: int | None = None) -> tuple[dict[str, np.ndarray], str]:
    """Pooled activations of `hooks`: name -> (n_seq, d_model), and a key naming their content.

    mean: over content tokens (neither special nor padding); cls: the first token; both come from the
    shared activation cache. position: the token whose character span covers 0-based `position` (of
    several, the one starting last: with overlapping k-mers, the k-mer starting there); computed by one
    forward pass, as the cache stores whole-sequence pools only."""
    if pooling in ("mean", "cls"):

        arrays = extract(model, list(sequences), list(hooks), dataset_hash=dataset_hash, reduce=pooling)
        return {name: np.asarray(arrays[name]) for name in hooks}, arrays.key
    if pooling == "position":
        return _position_pooled(model, sequences, hooks, position), _content_key(
            "position", model.model_hash, dataset_hash, sorted(hooks), position, CODE_VERSION)
    raise InputError(f"pooling must be one of {', '.join(POOLINGS)}, not {pooling!r}")


def _position_pooled(model: Any, sequences: Sequence[str], hooks: Sequence[str], position: int | None) -> dict[str, np.ndarray]:
    if position is None or position < 0:
        raise InputError("pooling: position needs `position:` set to a 0-based character index inside the windows")
    shortest = min(len(s) for s in sequences)
    if position >= shortest:
        raise InputError(f"position {position} lies past the end of the shortest sequence ({shortest} nt); "
                         "choose a smaller `position:`")
    batch = model.tokenize(list(sequences))
    offsets = batch.offsets.numpy()
    covers = (offsets[..., 0] <= position) & (position < offsets[..., 1])  # (n_seq, n_tok)
    if not covers.any(axis=1).all():
        raise InputError(f"position {position} is not covered by a token in every sequence; choose another `position:`")
    # the covering token that starts last: for overlapping k-mers the one starting at `position`
    token = covers.shape[1] - 1 - covers[:, ::-1].argmax(axis=1)
    out = {name: np.empty((len(sequences), model.d_model), dtype=np.float32) for name in hooks}
    for rows, outputs in iter_run(model, batch, list(hooks)):
        rows = rows.numpy()
        for name in hooks:
            out[name][rows] = outputs[name].numpy()[np.arange(len(rows)), token[rows]]
    return out


# ---------------------------------------------------------------------------------------------
# GC matching


def gc_matched_pairs(gc: np.ndarray, labels: np.ndarray, caliper: float, rng: np.random.Generator) -> np.ndarray:
    """Greedy 1:1 nearest-neighbour matching on GC with a caliper, positives visited in random order.

    Each positive takes the unused negative nearest in GC if it lies within `caliper`; ties go to the
    lower GC. Returns (n_pairs, 2) item indices (positive, negative)."""
    gc, labels = np.asarray(gc, dtype=np.float64), np.asarray(labels)
    negatives = np.flatnonzero(labels == 0)
    negatives = negatives[np.argsort(gc[negatives], kind="stable")]
    values = gc[negatives]
    used = np.zeros(len(negatives), dtype=bool)
    pairs = []
    for positive in rng.permutation(np.flatnonzero(labels == 1)):
        target = gc[positive]
        lo = int(np.searchsorted(values, target - caliper, side="left"))
        hi = int(np.searchsorted(values, target + caliper, side="right"))
        free = lo + np.flatnonzero(~used[lo:hi])
        if len(free):
            chosen = free[np.argmin(np.abs(values[free] - target))]
            used[chosen] = True
            pairs.append((positive, negatives[chosen]))
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


def gc_balance(gc_positive: np.ndarray, gc_negative: np.ndarray) -> dict[str, float]:
    """Two-sample Kolmogorov-Smirnov test and standardised mean difference of two GC samples."""
    from scipy.stats import ks_2samp

    pooled_sd = float(np.sqrt((np.var(gc_positive) + np.var(gc_negative)) / 2))
    difference = float(np.mean(gc_positive) - np.mean(gc_negative))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # ties: the exact p-value falls back to the asymptotic one
        test = ks_2samp(gc_positive, gc_negative)
    return {"ks_statistic": float(test.statistic), "ks_p": float(test.pvalue),
            "smd": difference / pooled_sd if pooled_sd > 0 else 0.0}


# ---------------------------------------------------------------------------------------------
# Every fit the probe family needs


@dataclass
class SuiteInputs:
    """What the fits read. Rows are windows; `split` is "train"/"test".

    features: hook -> (n, d) pooled activations; labels (n,) 0/1; sequences: n strings; coords: genomic
    intervals or None; activation_key: names the features' content (for the disk cache)."""

    features: dict[str, np.ndarray]
    labels: np.ndarray
    split: np.ndarray
    sequences: list[str]
    coords: Any | None
    activation_key: str

    @property
    def train(self) -> np.ndarray:
        return np.flatnonzero(self.split == "train")

    @property
    def test(self) -> np.ndarray:
        return np.flatnonzero(self.split == "test")


@dataclass(frozen=True)
class SuiteSettings:
    """How the fits are made. layer: a hook name, or None to fit every hook and select on the train split."""

    layer: str | None
    kmer_k: int = 4
    c_grid: tuple[float, ...] = DEFAULT_C_GRID
    n_folds: int = DEFAULT_FOLDS
    permutations: int = 20
    fold_seed: int = 0
    permutation_seed: int = 0


@dataclass
class ProbeSuite:
    """Every fitted probe's decision values (train rows in `train` order, test rows in `test` order).

    hooks: the fitted hooks (L); C (L,); oof_train (L, n_train) held-out-fold decisions at each hook's
    C; cv_auroc (L,) their pooled AUROC on the train split (what selects the hook); test_decision (L, n_test); coef (L, d), intercept (L,); selected: index of the
    evaluated hook (the named one, or the best inner-CV AUROC). baselines: name -> (n_test,) test
    decisions of gc_only, kmer and position_only (when coordinates exist). random_label:
    (permutations, n_test) decisions of probes fitted on permuted train labels at the selected hook's
    C. gc_shift: direction -> (test rows (m,) into the test order, decisions (m,)). notes: remarks.
    """

    hooks: list[str]
    C: np.ndarray
    cv_auroc: np.ndarray
    oof_train: np.ndarray
    test_decision: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray
    selected: int
    baselines: dict[str, np.ndarray]
    random_label: np.ndarray
    gc_shift: dict[str, tuple[np.ndarray, np.ndarray]]
    gc_median: float
    fold_method: str
    notes: list[str] = field(default_factory=list)

    @property
    def selected_hook(self) -> str:
        return self.hooks[self.selected]

    def probe(self, index: int | None = None) -> LinearProbe:
        """The fitted probe of hook `index` (default: the selected one) as a :class:`LinearProbe`."""
        index = self.selected if index is None else index
        probe = LinearProbe(C=float(self.C[index]))
        probe.C_, probe.coef_, probe.intercept_ = float(self.C[index]), self.coef[index], float(self.intercept[index])
        probe.cv_auroc_ = np.array([self.cv_auroc[index]])
        probe.oof_decision_ = self.oof_train[index]
        return probe


def fit_suite(inputs: SuiteInputs, settings: SuiteSettings, *, use_cache: bool = True) -> ProbeSuite:
    """Every fit the probe family needs; cached on disk under the content of inputs and settings."""
    if not use_cache:
        return _fit_suite(inputs, settings)

    path = cache_dir() / "probe_fits" / f"{suite_key(inputs, settings)}.pkl"
    return pickled(path, lambda: _fit_suite(inputs, settings), valid=lambda suite: isinstance(suite, ProbeSuite))


def suite_key(inputs: SuiteInputs, settings: SuiteSettings) -> str:
    """sha256 over the activations' key, labels, split, sequences, coordinates, settings and this code."""
    coords = None if inputs.coords is None else [inputs.coords.chrom.tolist(), inputs.coords.start.tolist(),
                                                 inputs.coords.strand.tolist()]
    return _content_key(SUITE_VERSION, CODE_VERSION, inputs.activation_key,
                        sorted(inputs.features), np.asarray(inputs.labels).tolist(), np.asarray(inputs.split).tolist(),
                        _strings_hash(inputs.sequences), coords, settings.__dict__)


def _content_key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _strings_hash(strings: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for s in strings:
        digest.update(s.encode("ascii", "replace") + b"\n")
    return digest.hexdigest()


def _fit_suite(inputs: SuiteInputs, settings: SuiteSettings) -> ProbeSuite:
    train, test = inputs.train, inputs.test
    y_train = np.asarray(inputs.labels)[train]
    coords_train = _take_coords(inputs.coords, train)
    folds = genomic_block_folds(y_train, coords_train, settings.n_folds, settings.fold_seed)
    fold_method = "genomic blocks" if coords_train is not None and _are_blocks(folds, coords_train) else "stratified random"
    hooks = [settings.layer] if settings.layer else list(inputs.features)

    def fit(X: np.ndarray, rows: np.ndarray = train, row_folds: np.ndarray = folds, C: float | None = None,
            labels: np.ndarray = y_train) -> LinearProbe:
        return fit_probe(X[rows], labels, folds=row_folds, seed=settings.fold_seed, c_grid=settings.c_grid,
                         n_folds=settings.n_folds, C=C)

    probes = [fit(inputs.features[hook]) for hook in hooks]
    oof_train = np.array([p.oof_decision_ for p in probes])
    cv_auroc = auroc_weighted_rows(oof_train, y_train)
    selected = 0 if settings.layer else int(np.argmax(np.where(np.isnan(cv_auroc), -np.inf, cv_auroc)))
    chosen = inputs.features[hooks[selected]]
    sequences = inputs.sequences
    baseline_features = {"gc_only": composition_features(sequences), "kmer": kmer_frequencies(sequences, settings.kmer_k)}
    position = position_features(inputs.coords)
    if position is not None:
        baseline_features["position_only"] = position
    baselines = {name: fit(X).decision_function(X[test]) for name, X in baseline_features.items()}
    rng = np.random.default_rng(settings.permutation_seed)
    random_label = np.array([
        fit(chosen, C=probes[selected].C_, labels=rng.permutation(y_train)).decision_function(chosen[test])
        for _ in range(settings.permutations)]).reshape(settings.permutations, len(test))
    gc = baseline_features["gc_only"][:, 0]
    gc_median = float(np.nanmedian(gc[train]))
    return ProbeSuite(
        hooks=hooks, C=np.array([p.C_ for p in probes]), cv_auroc=cv_auroc, oof_train=oof_train,
        test_decision=np.array([p.decision_function(inputs.features[h][test]) for p, h in zip(probes, hooks)]),
        coef=np.array([p.coef_ for p in probes]), intercept=np.array([p.intercept_ for p in probes]),
        selected=selected, baselines=baselines, random_label=random_label,
        gc_shift=_gc_shift_fits(chosen, inputs, gc, gc_median, settings), gc_median=gc_median,
        fold_method=fold_method,
    )


def auroc_weighted_rows(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """AUROC of every row of scores (K, n) against labels (n,): (K,) for weights None, else (B, K)."""

    values = np.stack([auroc_weighted(row, np.asarray(labels).astype(bool), weights) for row in scores], axis=1)
    return values[0] if weights is None else values


def _are_blocks(folds: np.ndarray, coords: Any) -> bool:
    order = np.lexsort((np.asarray(coords.start), np.asarray(coords.chrom)))
    return bool((np.diff(folds[order]) >= 0).all())


def _gc_shift_fits(X: np.ndarray, inputs: SuiteInputs, gc: np.ndarray, median: float,
                   settings: SuiteSettings) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Probes fitted on the low-GC (GC <= train median) train rows and scored on the high-GC test rows,
    and the reverse. direction -> (positions in the test order (m,), decisions (m,)); a direction whose
    training rows lack a class is left out."""
    train, test = inputs.train, inputs.test
    labels = np.asarray(inputs.labels)
    low_train, low_test = gc[train] <= median, gc[test] <= median
    out = {}
    for name, fit_rows, score_rows in (("low_to_high", low_train, ~low_test), ("high_to_low", ~low_train, low_test)):
        rows = train[fit_rows]
        if len(np.unique(labels[rows])) < 2 or not score_rows.any():
            continue
        folds = genomic_block_folds(labels[rows], _take_coords(inputs.coords, rows), settings.n_folds, settings.fold_seed)
        probe = fit_probe(X[rows], labels[rows], folds=folds, seed=settings.fold_seed, c_grid=settings.c_grid,
                          n_folds=settings.n_folds)
        positions = np.flatnonzero(score_rows)
        out[name] = (positions, probe.decision_function(X[test[positions]]))
    return out
