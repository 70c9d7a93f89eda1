"""Any model behind TransformerLens hook points (interop/hooked.py): the cache TransformerLens returns holds every
hook name we define, with our values; its hooks act as ours do."""

from __future__ import annotations

import itertools

import pytest
import torch

pytest.importorskip("transformer_lens")

from inductionlab.interop.hooked import HookedInductionModel, open_hooked  # noqa: E402
from inductionlab.models.amt import AMTransformer  # noqa: E402
from inductionlab.models.names import POS_ENCODINGS  # noqa: E402
from inductionlab.models.transformer import GeneralTransformer  # noqa: E402

N = 20


def _perturbed(model):
    gen = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for tensor in itertools.chain(model.parameters(), model.buffers()):
            if tensor.is_floating_point():
                tensor.add_(torch.randn(tensor.shape, generator=gen, dtype=tensor.dtype) * 0.1)
    return model.eval()


def _assert_same_cache(model, length: int) -> None:
    hooked = HookedInductionModel(model)
    tokens = torch.randint(0, N, (3, length), generator=torch.Generator().manual_seed(length))
    with torch.no_grad():
        logits, theirs = hooked.run_with_cache(tokens)
        ours: dict = {}
        expected = model(tokens, cache=ours)
    assert list(theirs.keys()) == list(model.hook_names()) == list(ours)  # every name, in forward order
    # equal up to float64 rounding: a hook on every point takes the explicit path's hooked branches
    assert torch.allclose(logits, expected, rtol=0, atol=1e-12)
    for name in ours:
        assert torch.allclose(theirs[name], ours[name], rtol=0, atol=1e-12), name


AMT_CASES = [(pos, ff, shift) for pos in POS_ENCODINGS for ff in ("none", "linear", "mlp") for shift in (False, True)
             if ff == "linear" or pos == "ape"]


@pytest.mark.parametrize("pos,ff,shift", AMT_CASES)
def test_the_amt_cache_holds_every_hook_name_with_our_values(pos, ff, shift):
    model = _perturbed(AMTransformer(N, 16, 2, pos, 64, 16, ff=ff, kv_shift=shift, pos_all_layers=pos == "rope"))
    for length in (9, 40):
        _assert_same_cache(model.double(), length)


@pytest.mark.parametrize("pos,all_layers,shift", [("rpe", False, False), ("bias", False, False),
                                                  ("rope", False, False), ("ape", False, True)])
def test_general_transformer_settings_without_a_native_form_are_adapted(pos, all_layers, shift):
    model = _perturbed(GeneralTransformer(N, 32, 2, 4, pos, 64, mlp=True, pos_all_layers=all_layers, kv_shift=shift))
    _assert_same_cache(model.double(), 23)


def test_transformer_lens_hooks_act_as_ours():
    """A hook added through TransformerLens (run_with_hooks) changes the output exactly as the same hook of ours."""
    model = _perturbed(AMTransformer(N, 16, 2, "ape", 64, ff="linear")).double()
    tokens = torch.randint(0, N, (2, 15), generator=torch.Generator().manual_seed(1))
    name = "blocks.0.attn.hook_pattern"

    def uniform(pattern, *_):
        counts = torch.arange(1, pattern.shape[-1] + 1, dtype=pattern.dtype)[:, None]
        return torch.tril(torch.ones_like(pattern)) / counts

    with torch.no_grad():
        hooked = HookedInductionModel(model)
        theirs = hooked.run_with_hooks(tokens, fwd_hooks=[(name, lambda value, hook: uniform(value))])
        ours = model(tokens, hooks={name: uniform})
        plain = model(tokens)
    assert torch.allclose(theirs, ours, rtol=0, atol=1e-12) and not torch.allclose(ours, plain, atol=1e-3)


def test_open_hooked_reads_a_trained_run(tmp_path, tiny):
    from inductionlab.train import open_trained, train

    cfg = tiny()  # the associative-memory transformer
    train(cfg, tmp_path / "run", progress=False)
    _, model, _ = open_trained(tmp_path / "run")
    tokens = torch.randint(0, cfg.data.n_tokens, (2, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        _, cache = open_hooked(tmp_path / "run").run_with_cache(tokens)
        ours: dict = {}
        model(tokens, cache=ours)
    assert set(cache.keys()) == set(ours)
    assert all(torch.allclose(cache[k], ours[k], rtol=0, atol=1e-5) for k in ours)
