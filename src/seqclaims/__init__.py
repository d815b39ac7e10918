"""seqclaims: pre-registered claims about what sequence models have learned, checked by pytest.

The package in five parts (each a subpackage):

- `core`: the claim schema, check families, evidence values, verdicts and the judge that joins them;
- `record`: the pre-registration registry, the ledger of accepted conclusions and the report;
- `inputs`: genomes, proteins, motifs, datasets, user data, tokenizers, models, hook points, the activation cache;
- `methods`: statistics, heads, interventions, units, probes, SAEs, circuits, OV, baselines, geometry, figures;
- `organisms`: the embedded models built here (planted, trained) and their cards;

and, beside them, the pytest plugin, the command line and the executors. This module is the public face for
family authors: what a module in `checks/` needs to declare a family and hand back its evidence.
"""

from seqclaims.core.evidence import Card, Ceiling, Estimate, Evidence, rounded
from seqclaims.core.families import Context, Family, Statistic
from seqclaims.core.schema import StrictModel
from seqclaims.errors import ClaimError, InputError, Unavailable
from seqclaims.methods.figures import Figure
from seqclaims.methods.stats import bootstrap, bootstrap_best, correct_pvalues, percentile_interval
from seqclaims.version import __version__

__all__ = ["Card", "Ceiling", "ClaimError", "Context", "Estimate", "Evidence", "Family", "Figure", "InputError",
           "Statistic", "StrictModel", "Unavailable", "__version__", "bootstrap", "bootstrap_best", "correct_pvalues",
           "percentile_interval", "rounded"]
