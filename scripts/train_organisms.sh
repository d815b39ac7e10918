#!/usr/bin/env sh
# Retrain the embedded organism models from their recipes (CPU), evaluate them on the held-out region
# and rewrite their cards in fixtures/models/. A run resumes from its checkpoint in the cache folder.
set -e
cd "$(dirname "$0")/.."
seqclaims train-organism --tokenization single --minutes 46 --threads 1 --notes scripts/organism_notes.md
seqclaims train-organism --tokenization 6mer --minutes 22 --threads 1 --notes scripts/organism_6mer_notes.md
