"""Designed prompts (docs/science.md §5), for the experiments and the tools alike.

- :mod:`.families`: the five prompt families, each built from a seeded :class:`~.families.PromptSpec`;
- :mod:`.query_pairs`: query pairs ``(a, b, c, j*)`` drawn from a bigram source, and *settings*
  (what the theory varies) whose prompts are drawn over several pairs.
"""
