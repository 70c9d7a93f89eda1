"""Interventions during training and evaluation (docs/science.md §8): hooks, clamps, ablations, freezes, resume."""

import math

import pytest
import torch

from inductionlab.cli import main
from inductionlab.config import InterventionConfig
from inductionlab.errors import ConfigError
from inductionlab.interventions import Interventions, ideal_pattern
from inductionlab.models.amt import AMTransformer
from inductionlab.models.build import build_model
from inductionlab.models.transformer import GeneralTransformer
from inductionlab.runs import RunDir
from inductionlab.train import prepare, train


def _amt(**kw):
    return AMTransformer(12, 16, n_layers=2, pos_enc="ape", max_len=32, init_seed=3, **kw)


def _tokens(batch=4, seq=10, seed=0):
    return torch.randint(0, 12, (batch, seq), generator=torch.Generator().manual_seed(seed))


def _iv(**kw):
    return InterventionConfig(**kw)


def test_ideal_patterns_by_hand():
    tokens = torch.tensor([[5, 7, 5, 9, 7, 5]])
    prev = ideal_pattern("previous-token", tokens, torch.arange(6))[0]
    assert torch.equal(prev[0], torch.tensor([1.0, 0, 0, 0, 0, 0]))  # t = 0 attends to itself
    for t in range(1, 6):
        assert prev[t, t - 1] == 1 and prev[t].sum() == 1
    ind = ideal_pattern("induction", tokens, torch.arange(6))[0]
    # t = 5 holds 5; keys s ≤ 5 with z_{s−1} = 5 are s = 1 and s = 3: half each
    assert torch.allclose(ind[5], torch.tensor([0, 0.5, 0, 0.5, 0, 0]))
    # t = 1 holds 7; no earlier key follows a 7: uniform over s ≤ 1
    assert torch.allclose(ind[1], torch.tensor([0.5, 0.5, 0, 0, 0, 0]))
    uni = ideal_pattern("uniform", tokens, torch.tensor([[2, 4]]))[0]
    assert torch.allclose(uni[0, :3], torch.full((3,), 1 / 3)) and uni[0, 3:].sum() == 0
    with pytest.raises(ConfigError, match="allowed"):
        ideal_pattern("sideways", tokens, torch.arange(6))


@pytest.mark.parametrize("make", [_amt, lambda: GeneralTransformer(12, 16, 2, 2, "rpe", 32, init_seed=1)])
def test_clamp_equals_target_and_mixes_linearly(make):
    model, tokens = make(), _tokens()
    name = "blocks.0.attn.hook_pattern"
    clean: dict = {}
    model(tokens, cache=clean)
    ideal = ideal_pattern("previous-token", tokens, torch.arange(tokens.shape[1]))[:, None]
    for strength in (1.0, 0.5):
        spec = _iv(target=name, op="clamp", pattern="previous-token", strength=strength)
        hooks = Interventions([spec], model).hooks(0, "train")
        cache: dict = {}
        model(tokens, cache=cache, hooks=hooks)
        expected = strength * ideal + (1 - strength) * clean[name]
        if strength == 1.0:
            assert torch.equal(cache[name], ideal.expand_as(cache[name]))
        assert torch.allclose(cache[name], expected, atol=1e-6)
        assert torch.allclose(cache[name].sum(-1), torch.ones(()), atol=1e-5)


def test_clamp_one_head_leaves_the_others():
    model, tokens = GeneralTransformer(12, 16, 2, 2, "rpe", 32, init_seed=1), _tokens()
    clean: dict = {}
    model(tokens, cache=clean)
    spec = _iv(target="blocks.1.attn.hook_pattern", op="clamp", pattern="uniform", head=1)
    cache: dict = {}
    model(tokens, cache=cache, hooks=Interventions([spec], model).hooks(0, "eval"))
    name = "blocks.1.attn.hook_pattern"
    assert torch.allclose(cache[name][:, 0], clean[name][:, 0])
    assert torch.allclose(cache[name][:, 1], ideal_pattern("uniform", tokens, torch.arange(10)))


def test_zero_ablation_of_layer_1_by_hand():
    """With layer 1's output zeroed the two-layer AMT is layer 2 on h⁰: S = c·h⁰ W_K² h⁰ᵀ, ξ = W_U (h⁰ + β h⁰ Φ₂ᵀ)."""
    model, tokens = _amt(), _tokens()
    spec = _iv(target="blocks.0.hook_attn_out", op="zero-ablate")
    logits = model(tokens, hooks=Interventions([spec], model).hooks(0, "train"))
    h0 = model.emb[tokens] + model.pos[: tokens.shape[1]]
    scores = model.score_scale * h0 @ model.wk2 @ h0.transpose(1, 2)
    causal = torch.ones(10, 10).tril().bool()
    beta = scores.masked_fill(~causal, float("-inf")).softmax(-1)
    by_hand = (h0 + beta @ (h0 @ (model.wo2 @ model.wv2).T)) @ model.unemb.T
    assert torch.allclose(logits, by_hand, atol=1e-5)
    assert not torch.allclose(logits, model(tokens), atol=1e-3)  # the ablation did something


def test_mean_ablation_scale_and_stop_gradient():
    model, tokens = _amt(), _tokens()
    name = "blocks.1.hook_attn_out"
    clean: dict = {}
    model(tokens, cache=clean)
    for op, expected in (("mean-ablate", clean[name].mean(0, keepdim=True).expand_as(clean[name])),
                         ("scale", 2.5 * clean[name])):
        cache: dict = {}
        model(tokens, cache=cache, hooks=Interventions([_iv(target=name, op=op, factor=2.5)], model).hooks(0, "eval"))
        assert torch.allclose(cache[name], expected, atol=1e-6), op
    # stop-gradient on a weight: same logits, no gradient into it
    trained = AMTransformer(12, 16, n_layers=2, max_len=32, init_seed=3, trained=("wk1", "wk2", "wo2"))
    forward = Interventions([_iv(target="wk2", op="stop-gradient")], trained).forward(trained, 0, "train")
    forward(tokens).logsumexp(-1).sum().backward()
    assert trained.wk2.grad is None and trained.wk1.grad is not None
    # scale on a weight: the stored matrix is untouched, the forward sees factor × W
    forward = Interventions([_iv(target="wo2", op="scale", factor=0.0)], trained).forward(trained, 0, "eval")
    no_wo = _amt(trained=("wk1", "wk2", "wo2"))
    no_wo.load_state_dict(trained.state_dict())
    with torch.no_grad():
        no_wo.wo2.zero_()
        assert torch.allclose(forward(tokens), no_wo(tokens), atol=1e-6)
    assert trained.wo2.abs().sum() > 0


def test_no_intervention_is_the_fast_path():
    model = _amt()
    assert Interventions([], model).forward(model, 0, "train") is model
    spec = _iv(target="blocks.0.hook_attn_out", op="zero-ablate", start=5, stop=7, phase="train")
    late = Interventions([spec], model)
    assert late.forward(model, 4, "train") is model and late.forward(model, 7, "train") is model
    assert late.forward(model, 5, "eval") is model and late.forward(model, 5, "train") is not model


def test_every_listed_hook_name_fires(tiny):
    for arch, extra in (("amt", {}), ("transformer", {"n_heads": 2, "mlp": True})):
        cfg = tiny(model={"arch": arch, **extra})
        model = build_model(cfg.model, cfg.data.n_tokens, 0)
        seen: list[str] = []
        hooks = {name: (lambda v, site, seen=seen: seen.append(site.name) or v) for name in model.hook_names()}
        model(_tokens(2, 8), hooks=hooks)
        assert seen == list(model.hook_names()), arch  # every one fires, once, in the declared order


def test_frozen_matrix_holds_while_others_train(tmp_path, tiny):
    cfg = tiny(model={"zero_init": False}, train={"lr": 0.1, "steps": 6},
               interventions=[{"target": "wk2", "op": "freeze", "value": "zero", "stop": 3}])
    trainer = prepare(cfg, tmp_path / "run")
    assert trainer.model.wk2.abs().sum() == 0  # held from step 0, before any update
    wk1 = trainer.model.wk1.detach().clone()
    for _ in range(3):
        trainer.train_step()
        assert trainer.model.wk2.abs().sum() == 0
    assert not torch.equal(trainer.model.wk1, wk1)
    trainer.train_step()  # step 3: the window is over
    assert trainer.model.wk2.abs().sum() > 0


def test_freeze_at_init_and_from_checkpoint(tmp_path, tiny):
    donor = tiny(train={"lr": 0.1})
    train(donor, tmp_path / "donor", progress=False)
    donor_wk1 = RunDir(tmp_path / "donor").load_checkpoint()[0]["model.wk1"]
    cfg = tiny(train={"lr": 0.1}, interventions=[
        {"target": "wk1", "op": "freeze", "value": "checkpoint", "checkpoint": str(tmp_path / "donor")},
        {"target": "wo2", "op": "freeze", "value": "init"}])
    trainer = prepare(cfg, tmp_path / "run")
    wo2 = trainer.model.wo2.detach().clone()
    for _ in range(4):
        trainer.train_step()
    assert torch.equal(trainer.model.wk1, donor_wk1) and torch.equal(trainer.model.wo2, wo2)


def test_resume_inside_a_window_is_exact(tmp_path, tiny):
    cfg = tiny(train={"steps": 10, "lr": 0.05, "checkpoint_every": 3, "eval_every": 2}, interventions=[
        {"target": "wk2", "op": "freeze", "value": "zero", "stop": 6},
        {"target": "blocks.0.attn.hook_pattern", "op": "clamp", "pattern": "previous-token", "strength": 0.5,
         "start": 2, "stop": 8}])
    train(cfg, tmp_path / "whole", progress=False)
    assert train(cfg, tmp_path / "parts", stop_after=4, progress=False)["finished"] is False
    train(cfg, tmp_path / "parts", progress=False)
    a, b = (RunDir(tmp_path / p).load_checkpoint()[0] for p in ("whole", "parts"))
    assert all(torch.equal(a[k], b[k]) for k in a if k.startswith(("model.", "optim.")))

    def rows(p):
        return [{k: v for k, v in r.items() if k != "elapsed_s" and not (isinstance(v, float) and math.isnan(v))}
                for r in RunDir(tmp_path / p).metrics()]
    assert rows("whole") == rows("parts")


def test_interventions_are_part_of_the_run_identity(tmp_path, tiny):
    train(tiny(), tmp_path / "run", progress=False)
    with pytest.raises(Exception, match="config"):
        train(tiny(interventions=[{"target": "blocks.0.hook_attn_out", "op": "zero-ablate"}]), tmp_path / "run",
              progress=False)


@pytest.mark.parametrize("spec,field", [
    ("{target: blocks.0.attn.hook_pattern, op: clamp}", "interventions.0.pattern"),
    ("{target: wk7, op: freeze}", "interventions.0.target"),
    ("{target: blocks.0.hook_attn_out, op: freeze}", "interventions.0.target"),
    ("{target: wk2, op: zero-ablate}", "interventions.0.target"),
    ("{target: blocks.0.attn.hook_pattern, op: clamp, pattern: previous-token, strength: 1.5}",
     "interventions.0.strength"),
    ("{target: wk2, op: freeze, phase: eval}", "interventions.0.phase"),
    ("{target: wk2, op: freeze, start: 5, stop: 5}", "interventions.0.stop"),
    ("{target: blocks.0.attn.hook_pattern, op: clamp, pattern: induction, head: 3}", "interventions.0.head"),
    ("{target: wk2, op: melt}", "interventions.0.op"),
])
def test_bad_intervention_is_one_line(tmp_path, capsys, spec, field):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "birth-topdown-quick", "--set", f"interventions=[{spec}]", "--out", str(tmp_path / "r")])
    out, err = capsys.readouterr()
    assert exit_info.value.code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and field in lines[0] and "Traceback" not in err


def test_a_window_opening_late_clears_the_momentum(tmp_path, tiny):
    cfg = tiny(model={"zero_init": False}, train={"lr": 0.1, "momentum": 0.9, "steps": 6},
               interventions=[{"target": "wk2", "op": "freeze", "start": 2, "stop": 4}])
    trainer = prepare(cfg, tmp_path / "run")
    wk2 = trainer.model.wk2
    held = wk2.detach().clone()  # value: init
    trainer.train_step()
    trainer.train_step()
    assert "momentum_buffer" in trainer.optimizer.state[wk2] and not torch.equal(wk2, held)
    trainer.train_step()  # step 2: back at its init, frozen, its momentum dropped
    assert wk2 not in trainer.optimizer.state and torch.equal(wk2, held)
    trainer.train_step()
    trainer.train_step()  # step 4: trains again from fresh momentum (= its gradient)
    assert not torch.equal(wk2, held)
    assert torch.equal(trainer.optimizer.state[wk2]["momentum_buffer"], wk2.grad)
