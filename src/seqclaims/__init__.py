"""seqclaims: pre-registered claims about what sequence models have learned, checked by pytest.

The package in layers, each importing only from the layers below it (`tests/test_layers.py` holds it so):

- base modules: `errors`, `version`, `paths`, `fsutil`, `lazy`, `import_graph`, `code_keys`;
- `core`: the claim schema (with what a claim's `model:` and `data:` say), the value types a family hands
  back (`core.values`, which imports nothing else from the package), verdicts, check families and `Context`;
- `inputs`: genomes, proteins, motifs, datasets, user data, tokenizers, models, hook points, the activation cache;
- `methods`: statistics, heads, interventions, units, probes, SAEs, circuits, OV, baselines, geometry, figures;
- `organisms` (the embedded models built here and their cards), `record` (the pre-registration registry, the
  ledger of accepted conclusions, the report) and `judging` (a claim file in, a result out: the judge, the
  evidence store, the claim's inputs), side by side above `methods` and blind to each other;
- at the top, the pytest plugin, the command line and the executors.

This module is the public face for family authors: what a module in `checks/` needs to declare a family and
hand back its evidence. Importing it loads neither torch nor the layers above `core` except `methods.stats`.
"""

from seqclaims.core.families import Context, Family, Statistic
from seqclaims.core.schema import StrictModel
from seqclaims.core.values import Card, Ceiling, Estimate, Evidence, Figure, rounded
from seqclaims.errors import ClaimError, InputError, Unavailable
from seqclaims.methods.stats import Selection, bootstrap, correct_pvalues, percentile_interval, select_and_score
from seqclaims.version import __version__

__all__ = ["Card", "Ceiling", "ClaimError", "Context", "Estimate", "Evidence", "Family", "Figure", "InputError",
           "Selection", "Statistic", "StrictModel", "Unavailable", "__version__", "bootstrap", "correct_pvalues",
           "percentile_interval", "rounded", "select_and_score"]
