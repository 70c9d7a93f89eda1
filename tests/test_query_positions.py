"""Query positions of a forward call (models/hooks.py ``query_positions_for``), both model families: (Tq,) and
(1, Tq) read the same positions in every row, (B, Tq) row by row, on the fast and the hooked paths; any other shape
is a ShapeError, never a silent read of row 0's positions or a kernel's size error."""

from __future__ import annotations

import pytest
import torch

from inductionlab.errors import ShapeError
from inductionlab.models.amt import AMTransformer
from inductionlab.models.transformer import GeneralTransformer

N_TOKENS, D_MODEL, SEQ, BATCH = 9, 16, 10, 3


pytestmark = pytest.mark.usefixtures("single_thread")  # conftest.py: one intra-op thread for tiny models


def models() -> list[torch.nn.Module]:
    amt = [AMTransformer(N_TOKENS, D_MODEL, 2, pos_enc, max_len=32, max_rel_dist=4, init_seed=1).double()
           for pos_enc in ("ape", "rpe")]
    general = [GeneralTransformer(N_TOKENS, D_MODEL, 2, 2, pos_enc, 32, mlp=False).double()
               for pos_enc in ("rpe", "none")]
    for model in general:
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0, 0.3, generator=torch.Generator().manual_seed(3))
    return amt + general


MODELS = models()
IDS = ["amt-ape", "amt-rpe", "transformer-rpe", "transformer-none"]


def tokens() -> torch.Tensor:
    return torch.randint(0, N_TOKENS, (BATCH, SEQ), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("model", MODELS, ids=IDS)
@pytest.mark.parametrize("explicit", [False, True], ids=["fast", "hooked"])
def test_shared_positions_read_every_row(model, explicit):
    x, positions = tokens(), torch.tensor([2, 7, 7, 9])
    full = model(x)
    kwargs = {"cache": {}} if explicit else {}
    for query in (positions, positions[None], positions.expand(BATCH, -1)):
        out = model(x, query_positions=query, **kwargs)
        assert out.shape == (BATCH, 4, N_TOKENS), tuple(query.shape)
        torch.testing.assert_close(out, full[:, positions], rtol=0, atol=1e-10, msg=f"query {tuple(query.shape)}")


@pytest.mark.parametrize("model", MODELS, ids=IDS)
def test_per_row_positions(model):
    x = tokens()
    query = torch.tensor([[0, 9], [5, 5], [9, 3]])
    out, full = model(x, query_positions=query), model(x)
    torch.testing.assert_close(out, torch.stack([full[b, query[b]] for b in range(BATCH)]), rtol=0, atol=1e-10)


@pytest.mark.parametrize("model", MODELS, ids=IDS)
@pytest.mark.parametrize("query", [torch.zeros(2, 4, dtype=torch.long), torch.zeros(BATCH, 4, 1, dtype=torch.long),
                                   [torch.zeros(1, 2, dtype=torch.long)],
                                   [torch.zeros(BATCH, dtype=torch.long)]],
                         ids=["rows", "three-dims", "groups-short", "groups-flat"])
def test_other_shapes_are_refused(model, query):
    with pytest.raises(ShapeError, match="query_positions"):
        model(tokens(), query_positions=query)
