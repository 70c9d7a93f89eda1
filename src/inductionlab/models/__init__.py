"""Models of SCIENCE §3: the associative-memory transformer and the general transformer."""
