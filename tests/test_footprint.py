"""The memory estimate: exact weights, the parts that grow with each field, refusal before allocation."""

from __future__ import annotations

import pytest
import torch

from conftest import tiny_config
from inductionlab.cli import main
from inductionlab.config import load_config
from inductionlab.errors import ConfigError
from inductionlab.footprint import FLOAT, MemoryEstimateError, check_memory, footprint, human, parse_size
from inductionlab.models.build import build_model


@pytest.mark.parametrize("model", [
    {"arch": "amt", "pos_enc": "ape"},
    {"arch": "amt", "pos_enc": "rpe", "ff": "mlp"},
    {"arch": "transformer", "pos_enc": "rope", "mlp": True, "n_heads": 2},
    {"arch": "transformer", "pos_enc": "ape", "n_layers": 3},
])
def test_the_weights_part_is_the_real_models_bytes(model):
    cfg = tiny_config(model=model)
    real = build_model(cfg.model, cfg.data.n_tokens, cfg.seeds.init)
    size = sum(p.numel() for p in real.parameters()) + sum(b.numel() for b in real.buffers())
    assert footprint(cfg).parts["weights"][0] == FLOAT * size


def test_each_part_grows_with_its_field():
    base = footprint(tiny_config()).parts
    wider = footprint(tiny_config(model={"d_model": 64})).parts
    larger = footprint(tiny_config(train={"batch_size": 800})).parts
    assert wider["weights"][0] > base["weights"][0] and wider["optimiser"][0] > base["optimiser"][0]
    assert larger["activations"][1] == "train.batch_size"
    assert larger["activations"][0] > 50 * base["activations"][0]
    assert footprint(tiny_config(train={"optimizer": "adamw"})).parts["optimiser"][0] == 3 * (
        base["optimiser"][0] // 2)  # a gradient and two moments, against a gradient and the momentum


def test_a_run_over_the_limit_is_refused_naming_the_field():
    cfg = tiny_config(model={"d_model": 4096})
    with pytest.raises(MemoryEstimateError, match=r"^model\.d_model: the run needs about .* but the --max-memory "
                                                  r"limit is 1 MiB; lower model\.d_model$"):
        check_memory(cfg, torch.device("cpu"), max_memory=2**20)
    small = check_memory(tiny_config(), torch.device("cpu"), max_memory=2**30)
    assert 0 < small.total < 2**30
    with pytest.raises(MemoryEstimateError, match=r"^data\.vocab_size: tensors of 1\.21e\+24 entries cannot be held"):
        footprint(tiny_config(data={"vocab_size": 2**40}))  # before a shape could overflow building the model
    mc = tiny_config(data={"task": "icl-mc", "k": 1000, "order": 9, "seq_len": 24})
    with pytest.raises(MemoryEstimateError, match=r"^data\.order: k\^n = 1000\^9"):
        footprint(mc)


def test_oversized_d_model_is_one_line_and_nothing_is_written(tmp_path, capsys):
    out = tmp_path / "big"
    with pytest.raises(SystemExit) as info:
        main(["train", "birth-quick", "--set", "model.d_model=100000000", "--out", str(out)])
    err = capsys.readouterr().err
    assert info.value.code == 2 and len(err.splitlines()) == 1
    assert err.startswith("error: model.d_model: the run needs about ") and "lower model.d_model" in err
    assert not out.exists()


def test_the_quick_presets_fit_in_a_gigabyte():
    for name in ("birth-quick", "hijack-quick", "length-quick", "nope3-quick", "interventions-quick", "icl-mc-quick"):
        assert footprint(load_config(name)).total < 2**30, name


def test_sizes_parse_and_print():
    assert parse_size("8GiB") == 8 * 2**30 and parse_size("512MB") == 512 * 10**6 and parse_size("2e9") == 2 * 10**9
    assert parse_size("1.5k") == 1500
    for bad in ("", "-1GB", "0", "8XB", "lots"):
        with pytest.raises(ConfigError, match="--max-memory"):
            parse_size(bad)
    assert human(512) == "512 B" and human(3 * 2**30) == "3 GiB" and human(1.5 * 2**20) == "1.5 MiB"
