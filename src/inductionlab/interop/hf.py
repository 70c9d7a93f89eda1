"""A trained general transformer as a HuggingFace GPT-2, and back (docs/interop.md).

The general transformer (docs/science.md §3.2) with learned (``ape``) or sinusoidal (``ape-sincos``) absolute
positions *is* a GPT-2 with zero biases in its projections, exact GELU and an untied unembedding: pre-LayerNorm
blocks, scores over ``√d_head``, one residual stream. The mapping (HuggingFace's ``Conv1D`` computes
``x @ weight``, the heads side by side in consecutive ``d_head`` columns)::

    transformer.wte.weight            W_E                         (N, d)
    transformer.wpe.weight            W_pos, or the sincos table   (max_len, d)
    transformer.h.{l}.ln_1            blocks.{l}.ln1               (weight, bias)
    transformer.h.{l}.attn.c_attn     [W_Q | W_K | W_V], heads side by side   (d, 3d), bias 0
    transformer.h.{l}.attn.c_proj     W_O, heads stacked           (d, d), bias 0
    transformer.h.{l}.ln_2, mlp.c_fc, mlp.c_proj   ln2, W_in, W_out (d_mlp = n_inner), biases 0;
                                      an attention-only block: zero MLP (its output is exactly 0)
    transformer.ln_f                  ln_final
    lm_head.weight                    W_Uᵀ                         (N, d), untied

Other settings have no GPT-2 form and are refused in one line naming the setting (:func:`hf_refusal`).
:func:`gpt2_state` and :func:`from_hf` need only safetensors; writing the directory for ``transformers``
(:func:`export_hf`) needs the ``interop`` extra.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from inductionlab.errors import ConfigError, InductionLabError
from inductionlab.models.families import TransformerFamily, family, kv_shift_layers
from inductionlab.models.names import ABSOLUTE_ENCODINGS
from inductionlab.models.transformer import GeneralTransformer

INSTALL = 'pip install -e ".[interop]"'  # the optional dependencies of the exports
MARK = "inductionlab"  # the key of config.json that says what the GPT-2 was


def hf_refusal(m) -> str | None:
    """Why a model described by ``m`` (a ModelConfig or a built model) has no GPT-2 form; None when it has."""
    fam = getattr(m, "family", None) or family(m.arch)  # a built model knows its family, a config names it
    if fam is not TransformerFamily:
        return f"model.arch={fam.arch} has no GPT-2 form (no LayerNorm, W_Q = I, frozen memories)"
    if m.pos_enc not in ABSOLUTE_ENCODINGS:
        return (f"model.pos_enc={m.pos_enc} has no GPT-2 form (GPT-2 adds absolute positions only: "
                f"{', '.join(ABSOLUTE_ENCODINGS)})")
    if kv_shift_layers(m):
        return "model.kv_shift has no GPT-2 form (GPT-2 attention does not shift keys and values)"
    return None


def gpt2_state(model: GeneralTransformer) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The GPT-2 config (``GPT2Config`` keyword arguments) and state dict of ``model`` (module docstring);
    ConfigError (:func:`hf_refusal`) for a model without a GPT-2 form."""
    refusal = hf_refusal(model)
    if refusal:
        raise ConfigError(refusal)
    d, n_layers = model.d_model, model.n_layers
    d_mlp = model.blocks[0].mlp.W_in.shape[1] if model.mlp else 4 * d
    config = {
        "vocab_size": model.n_tokens, "n_positions": model.max_len, "n_embd": d, "n_layer": n_layers,
        "n_head": model.n_heads, "n_inner": d_mlp, "activation_function": "gelu", "layer_norm_epsilon":
        model.ln_final.eps, "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0, "tie_word_embeddings": False,
        "bos_token_id": None, "eos_token_id": None,
        MARK: {"pos_enc": model.pos_enc, "mlp": model.mlp, "d_mlp": d_mlp if model.mlp else None},
    }
    zeros = torch.zeros  # every projection bias of GPT-2 is 0 here
    dtype = model.W_E.dtype
    state = {"transformer.wte.weight": model.W_E,
             "transformer.wpe.weight": model.W_pos if model.W_pos is not None else model.sincos_pos,
             "transformer.ln_f.weight": model.ln_final.weight, "transformer.ln_f.bias": model.ln_final.bias,
             "lm_head.weight": model.W_U.T}
    for l, block in enumerate(model.blocks):
        attn, pre = block.attn, f"transformer.h.{l}."
        qkv = [w.permute(1, 0, 2).reshape(d, d) for w in (attn.W_Q, attn.W_K, attn.W_V)]  # heads side by side
        state |= {pre + "ln_1.weight": block.ln1.weight, pre + "ln_1.bias": block.ln1.bias,
                  pre + "attn.c_attn.weight": torch.cat(qkv, 1), pre + "attn.c_attn.bias": zeros(3 * d, dtype=dtype),
                  pre + "attn.c_proj.weight": attn.W_O.reshape(d, d), pre + "attn.c_proj.bias": zeros(d, dtype=dtype),
                  pre + "mlp.c_fc.bias": zeros(d_mlp, dtype=dtype), pre + "mlp.c_proj.bias": zeros(d, dtype=dtype)}
        if block.mlp is not None:
            state |= {pre + "ln_2.weight": block.ln2.weight, pre + "ln_2.bias": block.ln2.bias,
                      pre + "mlp.c_fc.weight": block.mlp.W_in, pre + "mlp.c_proj.weight": block.mlp.W_out}
        else:  # attention-only: a zero MLP adds exactly 0
            state |= {pre + "ln_2.weight": torch.ones(d, dtype=dtype), pre + "ln_2.bias": zeros(d, dtype=dtype),
                      pre + "mlp.c_fc.weight": zeros(d, d_mlp, dtype=dtype),
                      pre + "mlp.c_proj.weight": zeros(d_mlp, d, dtype=dtype)}
    return config, {k: v.detach().contiguous().clone() for k, v in state.items()}


def read_export(directory: str | Path, what: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``config.json`` and ``model.safetensors`` of an exported folder; one-line InductionLabError naming ``what``
    the folder should have been when either cannot be read."""
    directory = Path(directory)
    try:
        return (json.loads((directory / "config.json").read_text()),
                load_file(str(directory / "model.safetensors")))
    except (OSError, ValueError) as err:
        raise InductionLabError(f"{directory}: not {what} written by inductionlab export ({err})") from None


def from_hf(directory: str | Path) -> GeneralTransformer:
    """The general transformer of a directory :func:`export_hf` wrote (``config.json`` and ``model.safetensors``),
    with the same weights: the same logits. Needs only safetensors."""
    config, state = read_export(directory, "a GPT-2 directory")
    mark = config.get(MARK)
    if not isinstance(mark, dict):
        raise InductionLabError(f"{directory}: config.json has no {MARK!r} entry; only directories written by "
                                "inductionlab export --to hf load back")
    d, n_heads, n_layers = config["n_embd"], config["n_head"], config["n_layer"]
    model = GeneralTransformer(config["vocab_size"], d, n_layers, n_heads, mark["pos_enc"], config["n_positions"],
                               mlp=mark["mlp"], d_mlp=mark["d_mlp"]).to(state["transformer.wte.weight"].dtype)
    dh = d // n_heads
    with torch.no_grad():
        model.W_E.copy_(state["transformer.wte.weight"])
        if model.W_pos is not None:
            model.W_pos.copy_(state["transformer.wpe.weight"])
        model.ln_final.weight.copy_(state["transformer.ln_f.weight"])
        model.ln_final.bias.copy_(state["transformer.ln_f.bias"])
        model.W_U.copy_(state["lm_head.weight"].T)
        for l, block in enumerate(model.blocks):
            pre = f"transformer.h.{l}."
            block.ln1.weight.copy_(state[pre + "ln_1.weight"])
            block.ln1.bias.copy_(state[pre + "ln_1.bias"])
            q, k, v = state[pre + "attn.c_attn.weight"].split(d, 1)
            for target, value in ((block.attn.W_Q, q), (block.attn.W_K, k), (block.attn.W_V, v)):
                target.copy_(value.reshape(d, n_heads, dh).permute(1, 0, 2))
            block.attn.W_O.copy_(state[pre + "attn.c_proj.weight"].reshape(n_heads, dh, d))
            if block.mlp is not None:
                block.ln2.weight.copy_(state[pre + "ln_2.weight"])
                block.ln2.bias.copy_(state[pre + "ln_2.bias"])
                block.mlp.W_in.copy_(state[pre + "mlp.c_fc.weight"])
                block.mlp.W_out.copy_(state[pre + "mlp.c_proj.weight"])
    return model.eval()


def character_tokenizer(vocab: str | None, n_tokens: int):
    """A ``PreTrainedTokenizerFast`` for the run's vocabulary, no BOS/EOS: one token per character of ``vocab``
    (text in, characters out), or, without one, the ids written as whitespace-separated integers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    if vocab is not None:
        tokenizer = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(vocab)}, merges=[]))
        tokenizer.decoder = decoders.Fuse()
    else:
        tokenizer = Tokenizer(models.WordLevel(vocab={str(i): i for i in range(n_tokens)}, unk_token=None))
        tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, model_max_length=None)


def export_hf(model: GeneralTransformer, out: str | Path, vocab: str | None = None) -> Path:
    """Write ``model`` as a GPT-2 directory ``transformers`` loads offline with ``AutoModelForCausalLM``
    (``config.json``, ``model.safetensors``) and its tokenizer (:func:`character_tokenizer`); needs the
    ``interop`` extra."""
    config, state = gpt2_state(model)
    try:
        from transformers import GPT2Config, GPT2LMHeadModel
    except ImportError:
        raise InductionLabError(f"export --to hf needs transformers: {INSTALL}") from None
    mark = config.pop(MARK)
    hf = GPT2LMHeadModel(GPT2Config(**config, **{MARK: mark})).to(model.W_E.dtype)
    hf.load_state_dict(state, strict=True)
    out = Path(out)
    hf.save_pretrained(out, safe_serialization=True)
    character_tokenizer(vocab, model.n_tokens).save_pretrained(out)
    return out
