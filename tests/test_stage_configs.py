"""`--config` for `prepare` and `evaluate`: YAML from the stage's dataclass, flags given override it,
flags not given do not, unknown keys are a one-line error naming them, the shipped recipes load."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from difusi.cli import build_parser, main
from difusi.cli.options import resolve_config
from difusi.config import flat_fields
from difusi.data.prepare import INDONESIAN_SUBSETS, PrepareConfig
from difusi.diffusion.sampler import SamplerSettings
from difusi.errors import DifusiError
from difusi.evaluation.evaluate import EvaluationConfig

CONFIGS = Path(__file__).parents[1] / "configs"
PREPARE = ["prepare", "--out", "data/x"]
EVALUATE = ["evaluate", "--base", "m", "--data", "test.parquet", "--out", "eval"]


def resolved(argv: list[str], cls):
    return resolve_config(build_parser().parse_args(argv), cls)


def test_every_key_is_an_option():
    parser = build_parser()
    for argv, cls in ((PREPARE, PrepareConfig), (EVALUATE, EvaluationConfig)):
        assert {flat.name for flat in flat_fields(cls)} <= set(vars(parser.parse_args(argv)))


def test_no_config_and_no_flags_give_the_defaults():
    assert resolved(PREPARE, PrepareConfig) == PrepareConfig()
    assert resolved(PREPARE, PrepareConfig).subsets == INDONESIAN_SUBSETS
    assert resolved(EVALUATE, EvaluationConfig) == EvaluationConfig()


def test_shipped_recipes_are_the_defaults():
    assert PrepareConfig.from_yaml(CONFIGS / "prepare-seed.yaml") == PrepareConfig()
    assert EvaluationConfig.from_yaml(CONFIGS / "evaluate-llada8b.yaml") == EvaluationConfig()


def test_prepare_flags_override_the_yaml(tmp_path):
    (tmp_path / "p.yaml").write_text(
        "embedder: tfidf\nclusters: 3\nper_cluster: 40\nsubsets: [dolly, 'wikihow,wikipedia_id']\n"
        "plot_umap: true\nworkers: 2\n"
    )
    config = resolved(
        [*PREPARE, "--config", str(tmp_path / "p.yaml"), "--clusters", "5", "--no-plot-umap"], PrepareConfig
    )
    assert (config.embedder, config.clusters, config.per_cluster, config.plot_umap, config.workers) == (
        "tfidf",
        5,
        40,
        False,
        2,
    )
    assert config.subsets == ("dolly", "wikihow", "wikipedia_id")
    assert (config.strat_fraction, config.test_size, config.seed) == (0.03, 100, 42)  # neither: defaults
    flags = resolved([*PREPARE, "--config", str(tmp_path / "p.yaml"), "--subsets", "x,y", "z"], PrepareConfig)
    assert flags.subsets == ("x", "y", "z")


def test_evaluate_flags_override_the_flat_yaml(tmp_path):
    (tmp_path / "e.yaml").write_text(
        "steps: 16\ngen_length: 16\nblock_length: 8\ncache: prefix\nmc_num: 4\nlimit: 2\nbatch_size: 2\n"
    )
    argv = [
        *EVALUATE,
        "--config",
        str(tmp_path / "e.yaml"),
        "--steps",
        "8",
        "--seed",
        "3",
        "--threshold",
        "0.9",
    ]
    config = resolved(argv, EvaluationConfig)
    assert config.sampler == SamplerSettings(
        steps=8, gen_length=16, block_length=8, cache="prefix", threshold=0.9
    )
    assert (config.mc_num, config.limit, config.batch_size, config.seed, config.max_length) == (
        4,
        2,
        2,
        3,
        512,
    )


def test_evaluation_config_yaml_round_trip(tmp_path):
    config = EvaluationConfig(sampler=SamplerSettings(steps=64, gen_length=64, remasking="random"), limit=5)
    config.to_yaml(tmp_path / "e.yaml")
    assert (
        "steps: 64" in (tmp_path / "e.yaml").read_text()
        and "sampler" not in (tmp_path / "e.yaml").read_text()
    )
    assert EvaluationConfig.from_yaml(tmp_path / "e.yaml") == config


@pytest.mark.parametrize(
    ("cls", "text", "named"),
    [
        (PrepareConfig, "clusters: 3\nper_clster: 4\n", "per_clster"),
        (EvaluationConfig, "steps: 8\ngen_lenght: 8\nsampler: {steps: 8}\n", "gen_lenght, sampler"),
    ],
)
def test_unknown_yaml_key_is_named(tmp_path, cls, text, named):
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(DifusiError, match=rf"^unknown option\(s\) in .*c\.yaml: {named}$"):
        cls.from_yaml(tmp_path / "c.yaml")


@pytest.mark.parametrize("argv", [PREPARE, EVALUATE])
def test_unknown_key_is_a_one_line_cli_error(tmp_path, capsys, argv):
    (tmp_path / "c.yaml").write_text("seed: 1\nbogus_key: 2\n")
    assert main([*argv, "--config", str(tmp_path / "c.yaml")]) == 2
    err = capsys.readouterr().err
    assert err == f"difusi {argv[0]}: error: unknown option(s) in {tmp_path / 'c.yaml'}: bogus_key\n"


def test_evaluate_sampler_settings_fail_before_loading(tmp_path, capsys):
    (tmp_path / "e.yaml").write_text("gen_length: 96\nblock_length: 64\n")
    assert main([*EVALUATE, "--config", str(tmp_path / "e.yaml")]) == 2
    assert "gen_length 96 is not divisible by block_length 64" in capsys.readouterr().err


def test_field_help_reaches_the_cli():
    help_text = build_parser()._subparsers._group_actions[0].choices["evaluate"].format_help()
    for flat in flat_fields(EvaluationConfig):
        assert "--" + flat.name.replace("_", "-") in help_text
    assert dataclasses.fields(PrepareConfig)[0].metadata["help"]
