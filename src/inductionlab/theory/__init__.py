"""Theory of docs/science.md §4.3–§4.5: the ideal associative-memory transformer, closed-form logits, fits."""
