"""Shared fixtures: tiny configs that train in a second or two."""

from __future__ import annotations

import pytest

from inductionlab.config import RunConfig, validate


def tiny_config(**sections) -> RunConfig:
    raw = {
        "name": "tiny",
        "data": {"source": "dirichlet", "vocab_size": 12, "seq_len": 24, "n_triggers": 2},
        "model": {"d_model": 16, "n_layers": 2, "pos_enc": "ape", "max_len": 64},
        "train": {"batch_size": 8, "steps": 6, "eval_every": 2, "checkpoint_every": 2, "eval_batch_size": 8,
                  "device": "cpu"},
    }
    for section, values in sections.items():
        raw.setdefault(section, {}).update(values)
    return validate(raw)


@pytest.fixture
def tiny():
    return tiny_config
