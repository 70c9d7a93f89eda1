"""The HTML report of ``inductionlab reproduce`` (figures are written by each experiment)."""
