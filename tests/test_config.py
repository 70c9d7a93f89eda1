"""Config validation: every bad value gives a ConfigError naming the field."""

import pytest

from inductionlab.config import apply_overrides, load_config, preset_names, validate
from inductionlab.errors import ConfigError


@pytest.mark.parametrize(
    "override,field",
    [
        ("model.d_model=0", "model.d_model"),
        ("model.d_model=-4", "model.d_model"),
        ("data.seq_len=0", "data.seq_len"),
        ("train.batch_size=-1", "train.batch_size"),
        ("train.steps=0", "train.steps"),
        ("train.lr=0", "train.lr"),
        ("train.eval_dense_until=-1", "train.eval_dense_until"),
        ("data.n_triggers=66", "data.n_triggers"),
        ("model.pos_enc=alibi", "model.pos_enc"),
        ("model.init=xavier", "model.init"),
        ("train.optimizer=lion", "train.optimizer"),
        ("data.trigger_mode=sometimes", "data.trigger_mode"),
        ("data.seq_len=4096", "data.seq_len"),
        ("model.trained=[wk9]", "model.trained"),
        ("model.colour=red", "colour"),
        ("train.momentum=1.5", "train.momentum"),
    ],
)
def test_bad_values_name_the_field(override, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")) as err:
        load_config("birth-quick", [override])
    assert "\n" not in str(err.value)


def test_enum_errors_list_allowed_values():
    with pytest.raises(ConfigError, match="'ape', 'ape-sincos', 'rpe'"):
        load_config("birth-quick", ["model.pos_enc=alibi"])


@pytest.mark.parametrize("bad", ["model.d_model", "=3", "model..x=1", "model.d_model=[1,"])
def test_malformed_set(bad):
    with pytest.raises(ConfigError, match="--set"):
        load_config("birth-quick", [bad])


def test_unknown_preset_lists_presets():
    with pytest.raises(ConfigError, match="birth-quick"):
        load_config("birth-slow")


def test_presets_are_valid_and_described():
    for name in preset_names():
        cfg = load_config(name)
        assert cfg.description and cfg.name == name


def test_overrides_apply_and_copy():
    raw = {"model": {"d_model": 8}}
    out = apply_overrides(raw, ["model.d_model=16", "train.lr=0.1", "data.trigger_mode=random"])
    assert out["model"]["d_model"] == 16 and out["train"]["lr"] == 0.1 and raw["model"]["d_model"] == 8
    assert validate(out).data.trigger_mode == "random"


def test_yaml_file_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(str(bad))
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(str(tmp_path / "missing.yaml"))


def test_the_encoding_list_and_the_config_type_agree():
    from typing import get_args

    from inductionlab.config import PosEnc
    from inductionlab.models.names import POS_ENCODINGS

    assert get_args(PosEnc) == POS_ENCODINGS
