"""kNN attacks and defenses on deep networks: a reference implementation of ASK (Wang et al.)."""
