"""Typed run configs: YAML load, presets, dotted overrides, validation with clear errors.

A run is fully described by a :class:`RunConfig` (data, model, train, seeds). Every field is
validated; an invalid value raises :class:`~inductionlab.errors.ConfigError` whose message names
the field, the value given and what is allowed.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from inductionlab.errors import ConfigError

# docs/science.md §3.1; the models check against these lists
POS_ENCODINGS = ("ape", "ape-sincos", "rpe", "bias", "rope", "none")
ABSOLUTE_ENCODINGS = ("ape", "ape-sincos")
PosEnc = Literal["ape", "ape-sincos", "rpe", "bias", "rope", "none"]

PositiveInt = Field(gt=0)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class DataConfig(_Strict):
    """The bigram-with-triggers task (docs/science.md §2)."""

    source: Literal["shakespeare", "dirichlet"] = "shakespeare"
    vocab_size: int = Field(65, gt=1, description="N for the dirichlet source (shakespeare is always 65)")
    concentration: float = Field(0.1, gt=0, description="Dirichlet concentration of the bigram rows")
    source_seed: int = Field(0, ge=0, description="seed of the dirichlet source")
    seq_len: int = Field(256, gt=0, description="T, tokens the model reads per sequence")
    n_triggers: int = Field(5, gt=0, description="K")
    trigger_mode: Literal["fixed", "random"] = "fixed"
    trigger_offset: int = Field(0, ge=0, description="fixed triggers skip the top `offset` tokens")
    output_mode: Literal["uniform", "bigram"] = "uniform"
    no_repeat: bool = False
    output_split: Literal["none", "train", "test"] = "none"
    exclude_degenerate: bool = False

    @property
    def n_tokens(self) -> int:
        return 65 if self.source == "shakespeare" else self.vocab_size


class ModelConfig(_Strict):
    """The model (docs/science.md §3): the associative-memory transformer or the general transformer."""

    arch: Literal["amt", "transformer"] = "amt"
    d_model: int = Field(256, gt=0)
    n_layers: int = Field(2, gt=0)
    pos_enc: PosEnc = "ape"
    pos_all_layers: bool = False
    max_len: int = Field(2048, gt=0, description="positions with an absolute encoding")
    max_rel_dist: int = Field(64, gt=0, description="δmax, the clip of relative distances")
    init: Literal["theory", "bietti"] = "bietti"
    trained: tuple[str, ...] | None = Field(
        None, description="AMT matrices that train, e.g. [wk1, wk2, wo2]; default: every wk, the last wo, wf"
    )
    zero_init: bool = False
    ff: Literal["none", "linear", "mlp"] = "none"
    n_heads: int = Field(1, gt=0)
    mlp: bool = False
    d_mlp: int | None = Field(None, gt=0)


class TrainConfig(_Strict):
    """Optimisation, evaluation schedule and checkpoints."""

    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.2, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    batch_size: int = Field(512, gt=0)
    steps: int = Field(1000, gt=0)
    loss_on: Literal["in-context", "all"] = "in-context"
    eval_every: int = Field(50, gt=0)
    probe_every: int = Field(0, ge=0, description="also log the weight-space memory probes (docs/science.md "
                             "§4.1, cheap) "
                             "every this many steps; 0: only at evaluation steps")
    eval_dense_until: int = Field(0, ge=0, description="also evaluate at every step up to this one (where "
                                  "the early transitions happen)")
    eval_batch_size: int = Field(256, gt=0)
    checkpoint_every: int = Field(100, gt=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"


class Seeds(_Strict):
    """Separate seeds so that changing one source of randomness leaves the others alone."""

    init: int = Field(0, ge=0)
    data: int = Field(1, ge=0)
    eval: int = Field(2, ge=0)


class RunConfig(_Strict):
    name: str = "run"
    description: str = ""
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    seeds: Seeds = Seeds()

    @model_validator(mode="after")
    def _consistent(self) -> RunConfig:
        n, k = self.data.n_tokens, self.data.n_triggers
        if k > n:
            raise ValueError(f"data.n_triggers: K={k} exceeds the vocabulary size N={n}")
        if self.data.trigger_mode == "fixed" and k + self.data.trigger_offset > n:
            raise ValueError(f"data.trigger_offset: offset {self.data.trigger_offset} + K={k} exceeds N={n}")
        if self.model.pos_enc in ABSOLUTE_ENCODINGS and self.data.seq_len > self.model.max_len:
            raise ValueError(
                f"data.seq_len: T={self.data.seq_len} exceeds model.max_len={self.model.max_len} "
                f"allowed by the absolute encoding {self.model.pos_enc!r}"
            )
        if self.model.d_model % self.model.n_heads:
            raise ValueError(f"model.n_heads: {self.model.n_heads} does not divide d_model={self.model.d_model}")
        if self.model.trained is not None:
            allowed = trainable_names(self.model)
            bad = [m for m in self.model.trained if m not in allowed]
            if bad:
                raise ValueError(f"model.trained: unknown matrices {bad}; allowed: {', '.join(allowed)}")
        return self


def trainable_names(model: ModelConfig) -> tuple[str, ...]:
    """Names of the AMT matrices that may be trained (docs/science.md §3.1)."""
    names = [f"{m}{layer}" for layer in range(1, model.n_layers + 1) for m in ("wk", "wv", "wo")]
    if model.pos_enc == "bias":
        names += [f"bias{layer}" for layer in range(1, model.n_layers + 1)]
    names += ["emb", "unemb", "pos"]
    if model.ff != "none":
        names.append("wf")
    return tuple(names)


def default_trained(model: ModelConfig) -> tuple[str, ...]:
    """docs/science.md §3.1 default: every ``W_K``, the last ``W_O``, ``W_F`` and the position biases."""
    names = [f"wk{layer}" for layer in range(1, model.n_layers + 1)] + [f"wo{model.n_layers}"]
    if model.pos_enc == "bias":
        layers = range(1, model.n_layers + 1) if model.pos_all_layers else (1,)
        names += [f"bias{layer}" for layer in layers]
    if model.ff != "none":
        names.append("wf")
    return tuple(names)


# --------------------------------------------------------------------------- loading


def _format_validation_error(err: ValidationError, origin: str) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        return f"{origin}: unknown field {loc!r}"
    given = first.get("input")
    if loc and first["type"] != "value_error":
        return f"{origin}: {loc}: {msg} (got {given!r})"
    return f"{origin}: {msg}"


def validate(raw: dict[str, Any], origin: str = "config") -> RunConfig:
    """Build a :class:`RunConfig` from a nested dict, raising ConfigError on the first problem."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{origin}: expected a mapping of sections, got {type(raw).__name__}")
    raw = {k: v for k, v in raw.items()}
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, origin)) from None


def preset_names() -> list[str]:
    return sorted(p.name.removesuffix(".yaml") for p in resources.files("inductionlab.presets").iterdir()
                  if p.name.endswith(".yaml"))


def _read_yaml(text: str, origin: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{origin}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: expected a YAML mapping at the top level")
    return data


def load_raw(preset_or_path: str) -> tuple[dict[str, Any], str]:
    """The raw dict of a preset name or a YAML file, and a label for error messages."""
    if preset_or_path in preset_names():
        text = resources.files("inductionlab.presets").joinpath(f"{preset_or_path}.yaml").read_text()
        return _read_yaml(text, f"preset {preset_or_path}"), f"preset {preset_or_path}"
    path = Path(preset_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        try:
            text = path.read_text()
        except OSError as err:
            raise ConfigError(f"{path}: cannot read config ({err.strerror})") from None
        return _read_yaml(text, str(path)), str(path)
    raise ConfigError(f"unknown preset {preset_or_path!r}; presets: {', '.join(preset_names())}")


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"model.d_model=64"`` → (["model", "d_model"], 64); the value is parsed as YAML."""
    key, sep, value = item.partition("=")
    parts = key.strip().split(".")
    if not sep or not key.strip() or any(not p.isidentifier() for p in parts):
        raise ConfigError(f"--set {item!r}: expected key=value with a dotted key such as model.d_model=64")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        raise ConfigError(f"--set {item!r}: value is not valid YAML") from None
    return parts, parsed


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of ``raw`` with each ``key=value`` override set."""
    out = yaml.safe_load(yaml.safe_dump(raw))  # deep copy of plain data
    for item in overrides:
        parts, value = parse_override(item)
        node = out
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {item!r}: {part!r} is not a section")
            node = child
        node[parts[-1]] = value
    return out


def load_config(preset_or_path: str, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Load a preset or YAML file, apply ``--set`` overrides and validate."""
    raw, origin = load_raw(preset_or_path)
    return validate(apply_overrides(raw, list(overrides)), origin)


def to_yaml(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def preset_descriptions() -> dict[str, str]:
    return {name: load_config(name).description for name in preset_names()}
