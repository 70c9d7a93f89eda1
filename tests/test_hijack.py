"""SCIENCE §5/§6 "hijack" end to end at the quick preset (trains two small models, about 1.5 min)."""

import json

import pytest

from inductionlab.errors import ConfigError, RunDirError
from inductionlab.experiments import run_experiment

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def hijack(tmp_path_factory):
    out = tmp_path_factory.mktemp("hijack")
    return run_experiment("hijack", out, "quick", progress=False), out


def test_readout_and_scalar_explain_the_logit_gaps(hijack):
    results, _ = hijack
    fam = results["families_1_to_3"]
    assert fam["readout_r2_gap"] >= 0.9 and fam["scalar_r2_gap"] >= 0.9
    assert "weights_only_r2_gap" in fam


def test_crossover_is_predicted_and_moves_with_length(hijack):
    results, _ = hijack
    crossover = results["crossover_n"]
    measured = [crossover[t]["model"] for t in sorted(crossover, key=int)]
    assert all(m is not None for m in measured)
    assert measured == sorted(measured) and measured[-1] > measured[0]  # longer prompts need more pairs
    for t, row in crossover.items():
        for name in ("readout", "scalar"):
            assert abs(row[name] - row["model"]) <= 1, (t, name, row)


def test_non_trigger_and_no_context_keep_the_bigram(hijack):
    results, _ = hijack
    assert results["by_family"]["non-trigger"]["model_b_wins"] == 0.0
    assert results["by_family"]["no-context"]["model_b_wins"] == 0.0
    non_trigger = [s for s in results["settings"] if s["family"] == "non-trigger"]
    gaps = [s["model_gap"] for s in non_trigger]
    assert max(gaps) - min(gaps) < 2.0 and max(gaps) < 0  # pairs in context barely move a non-trigger


def test_outputs_written(hijack):
    results, out = hijack
    assert json.loads((out / "results.json").read_text())["experiment"] == "hijack"
    assert "Crossover" in (out / "README.md").read_text()
    assert [c["verdict"] for c in results["claims"]] == ["holds"] * len(results["claims"])
    for name in results["figures"]:
        assert (out / name).stat().st_size > 10_000


def test_bad_input(tmp_path, hijack):
    with pytest.raises(ConfigError, match="--preset"):
        run_experiment("hijack", tmp_path, "huge")
    _, out = hijack
    config = out / "runs" / "hijack-quick-random" / "config.yaml"
    (tmp_path / "runs" / "hijack-quick-random").mkdir(parents=True)
    (tmp_path / "runs" / "hijack-quick-random" / "config.yaml").write_text(
        config.read_text().replace("d_model: 128", "d_model: 64"))
    with pytest.raises(RunDirError, match="different config"):
        run_experiment("hijack", tmp_path, "quick", progress=False)
