"""What claims are computed on: genomes, proteins, motifs, datasets, tokenizers, models, hook points and the activation cache."""
