"""inductionlab: how small transformers learn induction heads, and how they balance in-context
knowledge against the global bigram knowledge stored in their weights."""

__version__ = "0.1.0"
