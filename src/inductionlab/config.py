"""Typed run configs: YAML load, presets, dotted overrides, validation with clear errors.

A run is fully described by a :class:`RunConfig` (data, model, train, seeds). Every field is
validated; an invalid value raises :class:`~inductionlab.errors.ConfigError` whose message names
the field, the value given and what is allowed. The ``data`` section belongs to the task it names
(``data.task``): the task's own config model (tasks/registry.py) validates it, so a config carries
only its task's fields.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError, field_validator, model_validator

from inductionlab.errors import ConfigError
from inductionlab.models.families import FAMILIES, family
from inductionlab.models.names import ABSOLUTE_ENCODINGS, HEAD_POINTS, POS_ENCODINGS, is_hook_point
from inductionlab.tasks.registry import DEFAULT_TASK, SEED_LIMIT, DataConfig, config_model

# docs/science.md §3.1: the one list of encodings, in models/names.py
PosEnc = Literal[POS_ENCODINGS]  # type: ignore[valid-type]



FOLDER_NAME_RULE = "letters, digits, spaces and punctuation other than / and \\; not starting with '.'"


def folder_name_problem(value: str) -> str | None:
    """Why ``value`` cannot be one folder's name inside another (a run's, an experiment's, a grid's), or None.

    A name is never a path: no separator, no control character, nothing hidden or pointing upwards (``.``,
    ``..``), so that the folder it names always lands inside the one the user asked for."""
    if not value:
        return "is empty"
    if any(c in "/\\" or ord(c) < 32 or ord(c) == 127 for c in value):
        return "holds a path separator or a control character"
    if value.startswith("."):
        return "starts with '.'"
    return None


def check_folder_name(value: str, field: str) -> str:
    """``value`` when it is a folder name (:func:`folder_name_problem`), else ConfigError naming ``field`` and the
    allowed characters."""
    problem = folder_name_problem(value)
    if problem:
        raise ConfigError(f"{field}: {value!r} {problem}; a name is one folder name: {FOLDER_NAME_RULE}")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False)


# The data fields every config.yaml carried before each task validated its own (any task's, at their defaults
# where the task did not read them): dropped from a stored run's config when its task does not own them.
SHARED_DATA_FIELDS = ("k", "alpha", "order", "start", "source", "vocab_size", "concentration", "source_seed",
                      "n_triggers", "trigger_mode", "trigger_offset", "output_mode", "no_repeat", "output_split",
                      "exclude_degenerate")


class ModelConfig(_Strict):
    """The model (docs/science.md §3): the associative-memory transformer or the general transformer."""

    arch: Literal[tuple(FAMILIES)] = "amt"  # type: ignore[valid-type]  # the families of models/families.py
    d_model: int = Field(256, gt=0)
    n_layers: int = Field(2, gt=0, le=256)
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
    kv_shift: bool | tuple[int, ...] = Field(
        False, description="KV-shifting attention (docs/science.md §3.3): true in every block, or a list of "
        "blocks (0-based, as in hook names)")

    @field_validator("kv_shift", mode="before")
    @classmethod
    def _kv_shift(cls, value: Any) -> Any:
        allowed = "allowed: true, false, or a list of distinct 0-based block indices such as [0]"
        if isinstance(value, bool):
            return value
        if not isinstance(value, list | tuple) or not all(isinstance(v, int) and not isinstance(v, bool)
                                                          and v >= 0 for v in value):
            raise ValueError(f"model.kv_shift: {value!r} is not a choice of blocks; {allowed}")
        if len(set(value)) != len(value):
            raise ValueError(f"model.kv_shift: {list(value)} names a block twice; {allowed}")
        return tuple(value)


class TrainConfig(_Strict):
    """Optimisation, evaluation schedule and checkpoints."""

    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.2, gt=0, le=1e38, description="at most 1e38 (a float32 holds it)")
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0, le=1e38)
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
    keep_checkpoints: int = Field(2, ge=0, description="keep the newest this many checkpoints; 0 keeps every one "
                                  "(for `inductionlab trajectory`'s attention animation)")
    device: Literal["auto", "cpu", "cuda"] = "auto"


class Seeds(_Strict):
    """Separate seeds so that changing one source of randomness leaves the others alone."""

    init: int = Field(0, ge=0, lt=SEED_LIMIT)
    data: int = Field(1, ge=0, lt=SEED_LIMIT)
    eval: int = Field(2, ge=0, lt=SEED_LIMIT)


IDEAL_PATTERNS = ("previous-token", "induction", "uniform")  # interventions.ideal_pattern draws these


class InterventionConfig(_Strict):
    """One intervention (docs/science.md §8): an operation on a target during the steps ``[start, stop)``.

    ``target``: a hook name (``blocks.0.attn.hook_pattern``, ``blocks.1.hook_attn_out``, …; see
    ``hook_names`` in models/families.py) or a weight matrix (``wk2`` in the AMT, ``blocks.0.attn.W_K``
    in the general transformer; see ``weight_names`` there). ``clamp`` needs a ``hook_pattern`` target
    and a ``pattern``; ``freeze`` a weight and acts in training only; ``zero-ablate``/``mean-ablate`` an
    activation.
    """

    target: str
    op: Literal["clamp", "zero-ablate", "mean-ablate", "freeze", "scale", "stop-gradient"]
    head: int | None = Field(None, ge=0, description="one head of a hook_pattern/hook_attn_scores target; "
                             "default: every head")
    pattern: Literal[IDEAL_PATTERNS] | None = Field(  # type: ignore[valid-type]
        None, description="clamp: the ideal pattern mixed in")
    strength: float = Field(1.0, ge=0, le=1, description="clamp: λ in λ·ideal + (1 − λ)·model")
    factor: float = Field(1.0, description="scale: the factor")
    value: Literal["init", "zero", "checkpoint"] = Field("init", description="freeze: the value held")
    checkpoint: str | None = Field(None, description="freeze with value=checkpoint: a run directory or "
                                   "a checkpoint .safetensors file")
    start: int = Field(0, ge=0, description="first step (0-based) of the window")
    stop: int | None = Field(None, gt=0, description="the window ends before this step; null: never")
    phase: Literal["train", "eval", "both"] = "both"

    def active(self, step: int, phase: str) -> bool:
        """Whether this intervention acts at ``step`` in ``phase`` (``train`` or ``eval``)."""
        return (self.phase in (phase, "both") and self.start <= step
                and (self.stop is None or step < self.stop))


def check_intervention(iv: InterventionConfig, model: ModelConfig, where: str) -> None:
    """Raise ValueError naming the field when ``iv`` does not fit ``model``."""
    hooks, weights = family(model.arch).hook_names(model), family(model.arch).weight_names(model)
    if iv.target not in hooks and iv.target not in weights:
        raise ValueError(f"{where}.target: unknown target {iv.target!r}; allowed: a hook ({', '.join(hooks)}) "
                         f"or a weight ({', '.join(weights)})")
    is_weight = iv.target in weights
    if iv.op == "clamp" and not is_hook_point(iv.target, "pattern"):
        raise ValueError(f"{where}.target: clamp acts on an attention pattern (blocks.L.attn.hook_pattern), "
                         f"not {iv.target!r}")
    if iv.op == "clamp" and iv.pattern is None:
        raise ValueError(f"{where}.pattern: clamp needs a pattern; allowed: {', '.join(IDEAL_PATTERNS)}")
    if iv.op != "clamp" and iv.pattern is not None:
        raise ValueError(f"{where}.pattern: only clamp takes a pattern (op is {iv.op!r})")
    if iv.op == "freeze" and not is_weight:
        raise ValueError(f"{where}.target: freeze acts on a weight matrix ({', '.join(weights)}), not {iv.target!r}")
    if iv.op == "freeze" and iv.phase == "eval":
        raise ValueError(f"{where}.phase: freeze acts in training; allowed: train, both")
    if iv.op in ("zero-ablate", "mean-ablate") and is_weight:
        raise ValueError(f"{where}.target: {iv.op} acts on an activation (a hook), not the weight {iv.target!r}; "
                         "to zero a weight, freeze it with value=zero")
    if (iv.value == "checkpoint") != (iv.checkpoint is not None) and iv.op == "freeze":
        raise ValueError(f"{where}.checkpoint: give a checkpoint exactly when value=checkpoint")
    if iv.head is not None:
        if not is_hook_point(iv.target, *HEAD_POINTS):
            raise ValueError(f"{where}.head: a head is chosen only on hook_pattern or hook_attn_scores targets")
        if iv.head >= model.n_heads:
            raise ValueError(f"{where}.head: head {iv.head} does not exist; allowed: 0..{model.n_heads - 1}")
    if iv.stop is not None and iv.stop <= iv.start:
        raise ValueError(f"{where}.stop: the window [{iv.start}, {iv.stop}) is empty; stop must exceed start")


class RunConfig(_Strict):
    name: str = "run"  # also the run folder's default name (runs/NAME): one folder name, never a path
    description: str = ""
    data: SerializeAsAny[DataConfig] = Field(default_factory=dict, description="the task (data.task) and its "
                                             "fields, validated by the task's own config model")
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    seeds: Seeds = Seeds()
    interventions: tuple[InterventionConfig, ...] = Field(
        (), description="docs/science.md §8: operations on hooks and weights during training and/or evaluation")

    @field_validator("name")
    @classmethod
    def _folder_name(cls, value: str) -> str:
        problem = folder_name_problem(value)
        if problem:
            raise ValueError(f"name: {value!r} {problem}; a name is one folder name: {FOLDER_NAME_RULE}")
        return value

    @field_validator("data", mode="before")
    @classmethod
    def _task_fields(cls, value: Any) -> Any:
        """The data section validated by its task's config model (tasks/registry.py): each task owns its fields."""
        if not isinstance(value, dict):
            return value  # a validated section, or a wrong type that DataConfig refuses
        return config_model(value.get("task", DEFAULT_TASK)).model_validate(value)

    @model_validator(mode="after")
    def _consistent(self) -> RunConfig:
        if self.model.pos_enc in ABSOLUTE_ENCODINGS and self.data.seq_len > self.model.max_len:
            raise ValueError(
                f"data.seq_len: T={self.data.seq_len} exceeds model.max_len={self.model.max_len} "
                f"allowed by the absolute encoding {self.model.pos_enc!r}"
            )
        if isinstance(self.model.kv_shift, tuple) and any(b >= self.model.n_layers for b in self.model.kv_shift):
            raise ValueError(f"model.kv_shift: blocks {list(self.model.kv_shift)} outside the model's "
                             f"{self.model.n_layers} (0-based: 0 to {self.model.n_layers - 1})")
        if self.model.d_model % self.model.n_heads:
            raise ValueError(f"model.n_heads: {self.model.n_heads} does not divide d_model={self.model.d_model}")
        if self.model.trained is not None:
            allowed = family(self.model.arch).trainable_names(self.model)
            bad = [m for m in self.model.trained if m not in allowed]
            if bad:
                raise ValueError(f"model.trained: unknown matrices {bad}; allowed: "
                                 f"{', '.join(allowed) or 'none (every weight of this model trains)'}")
        for i, iv in enumerate(self.interventions):
            check_intervention(iv, self.model, f"interventions.{i}")
        return self


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


def validate_stored(raw: dict[str, Any], origin: str) -> RunConfig:
    """:func:`validate` for a run directory's ``config.yaml``: one written before each task validated its own
    fields carries every task's (:data:`SHARED_DATA_FIELDS`), and those its task does not own are dropped."""
    data = raw.get("data") if isinstance(raw, dict) else None
    if isinstance(data, dict):
        try:
            owned = config_model(data.get("task", DEFAULT_TASK)).model_fields
        except ConfigError:
            owned = None  # validate names the unknown task
        if owned is not None:
            raw = {**raw, "data": {k: v for k, v in data.items() if k in owned or k not in SHARED_DATA_FIELDS}}
    return validate(raw, origin)


def preset_names() -> list[str]:
    return sorted(p.name.removesuffix(".yaml") for p in resources.files("inductionlab.presets").iterdir()
                  if p.name.endswith(".yaml"))


MAX_DEPTH = 32  # no config nests deeper; deeper input is refused before anything recurses over it


def check_depth(data: Any, origin: str) -> None:
    """ConfigError when ``data`` nests lists and mappings more than :data:`MAX_DEPTH` levels deep."""
    stack, seen = [(data, 1)], set()
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list) and (id(node), depth) not in seen:  # YAML aliases share nodes
            seen.add((id(node), depth))
            if depth > MAX_DEPTH:
                raise ConfigError(f"{origin}: nested more than {MAX_DEPTH} levels deep; not a config")
            stack.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node))


def _read_yaml(text: str, origin: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{origin}: not valid YAML ({str(err).splitlines()[0]})") from None
    except RecursionError:
        raise ConfigError(f"{origin}: nested more than {MAX_DEPTH} levels deep; not a config") from None
    check_depth(data, origin)
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
            text = read_text_file(path, "config")
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: not UTF-8 text; a config is a YAML file") from None
        except OSError as err:
            raise ConfigError(f"{path}: cannot read config ({err.strerror})") from None
        return _read_yaml(text, str(path)), str(path)
    raise ConfigError(f"unknown preset {preset_or_path!r}; presets: {', '.join(preset_names())}")


MAX_FILE_BYTES = 2**20


def read_text_file(path: Path, what: str) -> str:
    """A config or grid file's text; ConfigError for a regular file over 1 MiB or anything that is no file."""
    if path.exists() and not path.is_file():  # a directory, a device, a pipe
        raise ConfigError(f"{path}: not a {what} file")
    with path.open("rb") as fh:
        data = fh.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(f"{path}: over 1 MiB; not a {what} file")
    return data.decode("utf-8")


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"model.d_model=64"`` → (["model", "d_model"], 64); the value is parsed as YAML."""
    key, sep, value = item.partition("=")
    parts = key.strip().split(".")
    if not sep or not key.strip() or any(not p.isidentifier() for p in parts):
        raise ConfigError(f"--set {item!r}: expected key=value with a dotted key such as model.d_model=64")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except (yaml.YAMLError, RecursionError):
        raise ConfigError(f"--set {item!r}: value is not valid YAML") from None
    check_depth(parsed, f"--set {key.strip()}")
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
