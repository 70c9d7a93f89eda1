"""The birth experiment (docs/science.md §6): both settings planned as described, analysed end to end at smoke size.

No test asserts a milestone of a trained model or a verdict: the order statistics and the claims are checked on
handmade runs in test_experiment_claims; here the presets, the arms, the freezing runs and the plumbing.
"""

import json

import pytest
import torch

from inductionlab.config import load_config
from inductionlab.experiments import run_experiment
from inductionlab.experiments.birth.run import PRESETS, arm_overrides, plan
from inductionlab.experiments.birth.topdown import ARMS, FROZEN, distance_from_init
from inductionlab.models.build import build_model
from inductionlab.probes.functional import FORMED
from inductionlab.probes.memory import memory_probes
from inductionlab.runs import RunDir
from inductionlab.tasks.bigram_task import make_sampler
from inductionlab.train import train


def test_top_down_setting_is_bietti_reference():
    """Setting (b): in-context loss, no W_F, fixed triggers, frozen embeddings, SGD, lr 0.03, weight decay 1e-4;
    the main arm at their T = 256 from random init."""
    cfg = load_config(PRESETS["quick"]["topdown"])
    assert (cfg.train.loss_on, cfg.model.ff, cfg.data.trigger_mode, cfg.data.n_triggers) == ("in-context", "none",
                                                                                               "fixed", 5)
    assert (cfg.train.optimizer, cfg.train.lr, cfg.train.momentum, cfg.train.weight_decay) == ("sgd", 0.03, 0.9, 1e-4)
    assert (cfg.data.seq_len, cfg.model.zero_init, cfg.train.probe_every) == (256, False, 1)
    model = build_model(cfg.model, cfg.data.n_tokens, 0)
    trained = {name for name, _ in model.named_parameters()}
    assert trained == {"wk1", "wk2", "wo2"}  # embeddings, unembedding, W_V, W_O¹ frozen
    paper = load_config(PRESETS["paper"]["topdown"])
    assert (paper.model.d_model, paper.data.seq_len, paper.train.batch_size, paper.train.steps) == (256, 256, 512, 1000)
    assert not paper.model.zero_init


@pytest.mark.parametrize("preset", ["quick", "paper"])
def test_every_arm_is_planned_over_the_same_seeds(preset):
    specs = [s for s in plan(preset) if dict(s.params)["setting"] == "topdown"]
    seeds = PRESETS[preset]["topdown_seeds"]
    assert len(seeds) >= 5 and len(specs) == len(ARMS) * len(seeds)
    cfgs = {dict(s.params)["arm"]: s.config() for s in specs if dict(s.params)["seed"] == seeds[0]}
    main = cfgs["T256-random"]
    s = PRESETS[preset]["freeze_until"]
    for arm, cfg in cfgs.items():
        assert cfg.data.seq_len == (256 if arm == "T256-random" else 64)
        assert cfg.data.seq_len * cfg.train.batch_size == main.data.seq_len * main.train.batch_size  # tokens per step
        assert cfg.model.zero_init == (arm == "T64-zero")
        assert cfg.train.steps == main.train.steps and cfg.model.d_model == main.model.d_model
        frozen = [(iv.target, iv.op, iv.value, iv.start, iv.stop) for iv in cfg.interventions]
        assert frozen == ([(FROZEN[arm], "freeze", "init", 0, s)] if arm in FROZEN else [])
    assert s % main.train.checkpoint_every == 0 and main.train.keep_checkpoints == 0  # W(0) and W(s) are kept


def test_zero_init_starts_every_memory_at_chance():
    cfg = load_config(PRESETS["quick"]["topdown"], [*arm_overrides(PRESETS["quick"])["T64-zero"], "model.d_model=64"])
    model = build_model(cfg.model, cfg.data.n_tokens, 0)
    source, sampler = make_sampler(cfg, torch.device("cpu"))
    probes = memory_probes(model, cfg.data.seq_len, sampler.fixed_triggers, source.bigram)
    # all scores equal: argmax picks token (or position) 0, right only for token 0 itself
    assert probes["wo"] == pytest.approx(1 / cfg.data.n_tokens)
    assert probes["wk2"] == 0.0 and probes["wk1"] == pytest.approx(1 / (cfg.data.seq_len - 1))


TINY = ["data.seq_len=64", "train.batch_size=16", "model.d_model=64", "train.steps=30", "train.eval_every=10",
        "train.checkpoint_every=10", "train.lr=0.3"]


@pytest.mark.parametrize("matrix, measurement", [("wo2", "fn_wo"), ("wk2", "fn_wk2"), ("wk1", "fn_wk1")])
def test_a_matrix_frozen_at_zero_never_reaches_its_functional_milestone(tmp_path, matrix, measurement):
    """Frozen at zero, the memory cannot work: no attention leads (uniform: 1/(t + 1) on any one key) and a zero
    W_O² copies nothing; the other matrices train, at ten times the preset's rate."""
    cfg = load_config(PRESETS["quick"]["topdown"], [*TINY, f"interventions=[{{target: {matrix}, op: freeze, "
                                                           "value: zero}]"])
    train(cfg, tmp_path / "r", progress=False)
    rows = [r for r in RunDir(tmp_path / "r").metrics() if measurement in r]
    assert len(rows) == 4 and all(r[measurement] < FORMED for r in rows)
    moved = distance_from_init(tmp_path / "r", 30)
    assert moved[matrix] == 0.0 and all(v > 0 for k, v in moved.items() if k != matrix)  # weight decay at least


@pytest.mark.slow
def test_birth_smoke_end_to_end(tmp_path):
    results = run_experiment("birth", tmp_path, "smoke", progress=False)
    folder = next(s.folder for s in plan("smoke") if dict(s.params).get("arm") == "T256-random")
    rows = [json.loads(line) for line in (tmp_path / "runs" / folder / "metrics.jsonl").open()]
    assert [r["step"] for r in rows] == list(range(41))  # probe rows at every step, evaluations among them
    assert all({"wo", "wk2_triggers", "wk1_all", "wk1_all_64"} <= set(r) for r in rows)
    assert sum("fn_wo" in r for r in rows) == 5
    top = results["top_down"]
    assert set(top["arms"]) == set(ARMS) and set(top["distance_at_s"]) == {*FROZEN, "T64-random"}
    for data in top["arms"].values():
        order = data["functional"][str(FORMED)]["order"]
        assert order["seeds"] == 2 and sum(order["orders"].values()) == 2
    assert set(results["side_by_side"]) >= {"Bietti et al. (reference)", "smoke: T256-random", "paper: T256-random"}
    for c in results["claims"]:
        assert c["null"] is not None and c["rule"].startswith("holds when")
    assert all((tmp_path / f).is_file() for f in results["figures"])
