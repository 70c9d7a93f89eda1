"""Tools that read trained runs, below the experiments: :mod:`.trajectory` (progress measures and the attention
animation, docs/science.md §9) and :mod:`.patching` (activation patching, §5, §8)."""
