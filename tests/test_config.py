import pytest

from edgedistill.config import ConfigError, describe, load_config, parse_overrides, save_config
from edgedistill.recipes.distill import DistillConfig


def test_overrides_parse_yaml_values():
    assert parse_overrides(["a.b=3", "c=[4, 8]", "d=true", "e=null", "f=x"]) == {
        "a": {"b": 3}, "c": [4, 8], "d": True, "e": None, "f": "x"}


def test_yaml_then_values_then_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("steps: 10\nstudent:\n  preset: deep\nbatch_size: 4\n")
    cfg = load_config(DistillConfig, p, ["steps=20", "student.thin_cnn=true", "target_layers=[1,2]"],
                      batch_size=8)
    assert (cfg.steps, cfg.batch_size, cfg.student.preset, cfg.student.thin_cnn,
            cfg.target_layers) == (20, 8, "deep", True, [1, 2])


def test_round_trip(tmp_path):
    cfg = load_config(DistillConfig, None, ["steps=7", "student.preset=wide"])
    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(DistillConfig, tmp_path / "c.yaml") == cfg


@pytest.mark.parametrize("override, match", [
    ("stpes=3", "did you mean 'steps'"),
    ("student.presett=deep", "did you mean 'student.preset'"),
    ("steps=abc", "steps must be an integer"),
    ("cpu=3", "cpu must be true or false"),
    ("student.preset=huge", "unknown student preset"),
    ("objective=magic", "objective 'magic' unknown"),
    ("steps", "not key=value"),
])
def test_bad_overrides_say_what_to_change(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config(DistillConfig, None, [override])


def test_contradictory_configs_fail_at_construction():
    with pytest.raises(ConfigError, match="reuse_teacher_cnn needs the teacher's CNN"):
        load_config(DistillConfig, None, ["reuse_teacher_cnn=true", "student.thin_cnn=true"])
    with pytest.raises(ConfigError, match="only used with objective=layer-to-layer"):
        load_config(DistillConfig, None, ["student_layers=[1]"])
    with pytest.raises(ConfigError, match="custom' needs num_layers"):
        load_config(DistillConfig, None, ["student.preset=custom"])


def test_every_field_has_help():
    rows = describe(DistillConfig)
    assert rows and all(help_ for _, _, help_ in rows), [k for k, _, h in rows if not h]


def test_yaml_1_1_exponent_strings_are_numbers(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("lr: 1e-3\nsteps: '12'\n")
    cfg = load_config(DistillConfig, p)
    assert cfg.lr == 0.001 and cfg.steps == 12


def test_yes_no_on_off_stay_words_and_true_false_stay_booleans():
    from edgedistill.config import load_config, parse_overrides
    from edgedistill.recipes.run import RunConfig

    assert parse_overrides(["stream.keywords=[yes, no, on, off]", "baseline=true"]) == \
        {"stream": {"keywords": ["yes", "no", "on", "off"]}, "baseline": True}
    cfg = load_config(RunConfig, None, ["stream.keywords=[yes,no]", "baseline=False"])
    assert cfg.stream.keywords == ["yes", "no"] and cfg.baseline is False


def test_non_default_keeps_only_what_differs_so_new_fields_leave_hashes_alone():
    from dataclasses import dataclass, field, make_dataclass

    from edgedistill.config import non_default
    from edgedistill.recipes.run import RunConfig
    from edgedistill.training.stages import spec_hash

    cfg = load_config(RunConfig, None, ["distill.steps=7", "distill.student.preset=deep", "stream.keywords=[yes]"])
    assert non_default(cfg) == {"distill": {"steps": 7, "student": {"preset": "deep"}}, "stream": {"keywords": ["yes"]}}
    assert non_default(RunConfig()) == {}

    @dataclass
    class Old:
        steps: int = 3

    New = make_dataclass("New", [("steps", int, field(default=3)), ("added", bool, field(default=False))])
    assert spec_hash(non_default(Old(steps=5))) == spec_hash(non_default(New(steps=5)))
