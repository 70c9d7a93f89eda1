"""Models of docs/science.md §3: the associative-memory transformer and the general transformer."""
