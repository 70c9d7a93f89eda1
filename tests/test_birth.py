"""The birth experiment (docs/science.md §6): both settings planned as described, analysed end to end at smoke size.

No test asserts a milestone of a trained model or a verdict: the order statistics are checked on
handmade runs in test_experiment_claims; here the presets, the probe schedule and the plumbing.
"""

import json

import pytest
import torch

from inductionlab.config import load_config
from inductionlab.experiments import run_experiment
from inductionlab.experiments.birth.run import INITS, MEMORIES, PRESETS, THRESHOLDS, plan
from inductionlab.models.build import build_model
from inductionlab.probes.memory import memory_probes
from inductionlab.tasks.bigram_task import make_sampler


def test_top_down_setting_is_bietti_reference():
    """Setting (b): in-context loss, no W_F, fixed triggers, frozen embeddings, SGD, lr 0.03, weight decay 1e-4."""
    cfg = load_config(PRESETS["quick"]["topdown"])
    assert (cfg.train.loss_on, cfg.model.ff, cfg.data.trigger_mode, cfg.data.n_triggers) == ("in-context", "none",
                                                                                               "fixed", 5)
    assert (cfg.train.optimizer, cfg.train.lr, cfg.train.weight_decay, cfg.model.d_model) == ("sgd", 0.03, 1e-4, 256)
    assert cfg.train.probe_every == 1  # milestones resolved to the step
    model = build_model(cfg.model, cfg.data.n_tokens, 0)
    trained = {name for name, _ in model.named_parameters()}
    assert trained == {"wk1", "wk2", "wo2"}  # embeddings, unembedding, W_V, W_O¹ frozen
    paper = load_config(PRESETS["paper"]["topdown"])
    assert (paper.model.d_model, paper.data.seq_len, paper.train.batch_size, paper.train.steps) == (256, 256, 512, 1000)


def test_both_settings_are_planned_over_seeds():
    specs = plan("quick")
    top_down = [s for s in specs if dict(s.params)["setting"] == "topdown"]
    seeds = PRESETS["quick"]["topdown_seeds"]
    assert len(top_down) == len(INITS) * len(seeds) and len(seeds) >= 5
    by_init = {dict(s.params)["init"]: s.config() for s in top_down}
    assert by_init["zero"].model.zero_init and not by_init["random"].model.zero_init


def test_zero_init_starts_every_memory_at_chance():
    cfg = load_config(PRESETS["quick"]["topdown"], ["model.zero_init=true", "model.d_model=64"])
    model = build_model(cfg.model, cfg.data.n_tokens, 0)
    source, sampler = make_sampler(cfg, torch.device("cpu"))
    probes = memory_probes(model, cfg.data.seq_len, sampler.fixed_triggers, source.bigram)
    # all scores equal: argmax picks token (or position) 0, right only for token 0 itself
    assert probes["wo"] == pytest.approx(1 / cfg.data.n_tokens)
    assert probes["wk2"] == 0.0 and probes["wk1"] == pytest.approx(1 / (cfg.data.seq_len - 1))


@pytest.mark.slow
def test_birth_smoke_end_to_end(tmp_path):
    results = run_experiment("birth", tmp_path, "smoke", progress=False)
    rows = [json.loads(line) for line in (tmp_path / "runs" / plan("smoke")[-1].folder / "metrics.jsonl").open()]
    assert [r["step"] for r in rows] == list(range(41))  # probe rows at every step, evaluations among them
    assert all(set(MEMORIES) <= set(r) for r in rows) and sum("loss_all" in r for r in rows) == 5
    for init in INITS:
        data = results["top_down"][init]
        assert set(data["by_threshold"]) == {str(t) for t in THRESHOLDS}
        for row in data["by_threshold"].values():
            assert row["order"]["seeds"] == len(PRESETS["smoke"]["topdown_seeds"])
            assert sum(row["order"][k] for k in ("in_order", "tied", "other_order", "undetermined")) == 2
    final = results["all_targets"]["final"]["two-layer"]
    assert {"acc_in_context", "acc_in_context_all", "degenerate_in_context_share", "wo", "wo_ff"} <= set(final)
    for c in results["claims"]:
        assert c["null"] is not None and c["rule"].startswith("holds when")
    assert all((tmp_path / f).is_file() for f in results["figures"])
