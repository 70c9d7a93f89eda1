"""The general transformer as a HuggingFace GPT-2 and back (docs/interop.md), in float64."""

from __future__ import annotations

import itertools

import pytest
import torch

from inductionlab.interop.hf import export_hf, from_hf
from inductionlab.models.transformer import GeneralTransformer
from inductionlab.tasks.sources import shakespeare_source

transformers = pytest.importorskip("transformers")

N = 65


def _model(pos: str, mlp: bool, heads: int) -> GeneralTransformer:
    """A general transformer with every weight moved away from its init (so no term is accidentally zero)."""
    model = GeneralTransformer(N, 32, 2, heads, pos, 64, mlp=mlp, init_seed=3).double()
    gen = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.3)
    return model.eval()


def _log_probs(logits: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(logits.double(), -1)


@pytest.mark.parametrize("pos,mlp,heads", list(itertools.product(["ape", "ape-sincos"], [False, True], [1, 4])))
def test_transformers_loads_the_same_model(tmp_path, pos, mlp, heads):
    model = _model(pos, mlp, heads)
    export_hf(model, tmp_path / "gpt2", shakespeare_source().vocab)
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "gpt2", local_files_only=True,
                                                           dtype=torch.float64, attn_implementation="eager").eval()
    gen = torch.Generator().manual_seed(5)
    for length in (17, 64):
        tokens = torch.randint(0, N, (3, length), generator=gen)
        with torch.no_grad():
            out = hf(tokens, output_attentions=True)
            cache: dict = {}
            ours = model(tokens, cache=cache)
        assert (_log_probs(out.logits) - _log_probs(ours)).abs().max() < 1e-6
        for layer, pattern in enumerate(out.attentions):
            assert (pattern - cache[f"blocks.{layer}.attn.hook_pattern"]).abs().max() < 1e-6
        back = from_hf(tmp_path / "gpt2")
        with torch.no_grad():  # the same model back: identical logits on either path (fused, and with a cache)
            assert torch.equal(back(tokens), model(tokens))
            assert torch.equal(back(tokens, cache={}), ours)


def test_the_tokenizer_reads_the_runs_vocabulary(tmp_path):
    source = shakespeare_source()
    export_hf(_model("ape", False, 1), tmp_path / "gpt2", source.vocab)
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "gpt2", local_files_only=True)
    text = "First Citizen:\nBefore we proceed"
    ids = tokenizer(text).input_ids
    assert ids == source.encode(text).tolist() and tokenizer.decode(ids) == text  # no BOS, one id per character
    export_hf(_model("ape", False, 1), tmp_path / "ids", None)
    numbers = transformers.AutoTokenizer.from_pretrained(tmp_path / "ids", local_files_only=True)
    assert numbers("3 14 0").input_ids == [3, 14, 0]


def test_export_command(tmp_path, tiny, capsys):
    from inductionlab.cli import main
    from inductionlab.train import open_trained, train

    def run(*args):
        try:
            main(list(args))
            code = 0
        except SystemExit as exit_info:
            code = exit_info.code
        return code, capsys.readouterr().err

    cfg = tiny(model={"arch": "transformer", "n_heads": 2, "mlp": True}, train={"steps": 2})
    train(cfg, tmp_path / "run", progress=False)
    assert run("export", str(tmp_path / "run"), "--to", "hf", str(tmp_path / "gpt2"))[0] == 0
    _, model, _ = open_trained(tmp_path / "run")
    tokens = torch.randint(0, cfg.data.n_tokens, (2, 24), generator=torch.Generator().manual_seed(0))
    assert torch.equal(from_hf(tmp_path / "gpt2")(tokens), model(tokens))
    before = (tmp_path / "gpt2" / "model.safetensors").read_bytes()
    code, err = run("export", str(tmp_path / "run"), "--to", "hf", str(tmp_path / "gpt2"))
    assert code == 2 and "not an empty folder" in err and len(err.strip().splitlines()) == 1
    assert (tmp_path / "gpt2" / "model.safetensors").read_bytes() == before  # nothing overwritten
    train(tiny(train={"steps": 2}), tmp_path / "amt", progress=False)
    code, err = run("export", str(tmp_path / "amt"), "--to", "hf", str(tmp_path / "x"))
    assert code == 2 and "model.arch=amt has no GPT-2 form" in err
    assert not (tmp_path / "x").exists()


def test_without_transformers_the_export_says_how_to_install(tmp_path, monkeypatch):
    import sys

    from inductionlab.errors import InductionLabError

    monkeypatch.setitem(sys.modules, "transformers", None)  # as if not installed: importing it fails
    with pytest.raises(InductionLabError, match=r'pip install -e "\.\[interop\]"'):
        export_hf(_model("ape", False, 1), tmp_path / "gpt2")
    assert not (tmp_path / "gpt2").exists()
