"""`--config <yaml|json>` on every command: the file holds the options, flags on the command line override it, and
a key that is no option (or a value of the wrong type) is refused naming it and the valid options."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lmm_concepts.cli import COMMANDS, build_parser, main
from lmm_concepts.config_file import read_config_file
from tests._dictionary_fixtures import planted


def parse(command: str, config_file, *argv: str):
    return build_parser(command, read_config_file(config_file)).parse_args([command, *argv]).cfg


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of the CLI run in this process."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main(list(args))
    out = capsys.readouterr()
    return exit_.value.code, out.out, out.err


def test_fit_from_a_yaml_file_with_a_flag_overriding_it(tmp_path):
    np.save(tmp_path / "Z.npy", planted().numpy())
    (tmp_path / "fit.yaml").write_text(
        f"store: {tmp_path / 'Z.npy'}\nout: {tmp_path / 'dico'}\nmethod: pca\nn-concepts: 3\nseed: 5\n"
    )
    main(["fit", "--config", str(tmp_path / "fit.yaml"), "--n_concepts", "2"])
    saved = json.loads((tmp_path / "dico" / "fit_config.json").read_text())
    assert saved["method"] == "pca" and saved["seed"] == 5  # from the file
    assert saved["n_concepts"] == 2  # the flag wins over the file
    assert json.loads((tmp_path / "dico" / "cfg.json").read_text())["d_sae"] == 2
    # the positional given on the command line wins too; the JSON a fit saves is itself a valid --config
    cfg = parse("fit", tmp_path / "dico" / "fit_config.json", "other.npy")
    assert cfg.store == "other.npy" and cfg.n_concepts == 2 and cfg.out == str(tmp_path / "dico")


def test_ground_from_a_json_file_nested_or_flat_model_options(tmp_path):
    path = tmp_path / "ground.json"
    path.write_text(
        json.dumps(
            {
                "store": "s",
                "dictionary": "d",
                "out": "o",
                "n_words": 7,
                "use_bias": True,
                "model": {"model": "toy", "device": "cuda:1"},
            }
        )
    )
    cfg = parse("ground", path)
    assert (cfg.store, cfg.n_words, cfg.use_bias, cfg.model.device) == ("s", 7, True, "cuda:1")
    cfg = parse("ground", path, "--n-words", "2", "--device", "cpu", "--use_bias", "false")
    assert (cfg.n_words, cfg.model.device, cfg.use_bias, cfg.store) == (2, "cpu", False, "s")
    path.write_text(json.dumps({"device": "cuda:0", "model": "toy"}))  # flat, as on the command line
    cfg = parse("ground", path)
    assert cfg.model.device == "cuda:0" and cfg.model.model == "toy"


def test_extract_from_yaml_keeps_lists_and_the_flag_wins(tmp_path):
    path = tmp_path / "extract.yml"
    path.write_text("token: dog\nlayers: [final, '3']\nbatch_size: 4\nmodel: toy\n")
    cfg = parse("extract", path)
    assert (cfg.token, cfg.layers, cfg.batch_size) == ("dog", ["final", "3"], 4)
    cfg = parse("extract", path, "--layers", "1", "--token", "cat")
    assert (cfg.token, cfg.layers, cfg.batch_size) == ("cat", ["1"], 4)


def test_yaml_numbers_for_text_options_and_text_for_float_options_read_as_on_the_command_line(tmp_path):
    # YAML reads `l1: 0.5` and `layers: [final, 3]` as numbers (the options take text, as `--l1 0.5` gives it), and
    # `1e-3` without a dot as text
    path = tmp_path / "fit.yaml"
    path.write_text("store: z.npy\nout: o\nl1: 0.5\nlayer: 3\n")
    assert (parse("fit", path).l1, parse("fit", path).layer) == ("0.5", "3")
    path = tmp_path / "extract.yaml"
    path.write_text("token: dog\nlayers: [final, 3]\nmodel: toy\n")
    assert parse("extract", path).layers == ["final", "3"]
    path = tmp_path / "train.yaml"
    path.write_text("clip: {lr: 1e-3}\n")
    assert parse("train-toy", path).clip.lr == 1e-3
    path = tmp_path / "sweep.yaml"
    path.write_text("l1: 1e-2\n")
    assert parse("sweep", path).l1 == 1e-2


def test_unknown_keys_and_bad_values_are_refused_naming_them(tmp_path, capsys):
    path = tmp_path / "fit.yaml"
    path.write_text("store: z.npy\nout: o\nn_concept: 3\nlr: 0.1\n")
    code, _, err = cli(capsys, "fit", "--config", str(path))
    assert code == 2 and err.count("\n") == 1
    assert "unknown options 'n_concept', 'lr'" in err and "valid options: batch_size, checkpoint," in err
    assert "n_concepts" in err
    path.write_text("store: z.npy\nout: o\nn_concepts: many\n")
    code, _, err = cli(capsys, "fit", "--config", str(path))
    assert code == 2 and "n_concepts = 'many' is not a valid value (expected int)" in err
    path.write_text("method: gradient_boosting\n")
    code, _, err = cli(capsys, "fit", "--config", str(path))
    assert code == 2 and "method = 'gradient_boosting' is not a valid value" in err
    (tmp_path / "bad.json").write_text("{not json")
    code, _, err = cli(capsys, "ground", "--config", str(tmp_path / "bad.json"))
    assert code == 2 and err.startswith("lmm-concepts ground: error: --config") and "cannot parse it" in err
    code, _, err = cli(capsys, "ground", "--config", str(tmp_path / "nowhere.yaml"))
    assert code == 2 and "no such file" in err
    (tmp_path / "opts.toml").write_text("")
    code, _, err = cli(capsys, "ground", "--config", str(tmp_path / "opts.toml"))
    assert code == 2 and ".yaml, .yml, .json" in err
    code, _, err = cli(capsys, "ground", "--config")
    assert code == 2 and "--config needs a file" in err


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_takes_a_config_file(command, tmp_path, capsys):
    path = tmp_path / "empty.json"
    path.write_text("{}")
    code, out, _ = cli(capsys, command, "--config", str(path), "--help")
    assert code == 0 and "--config FILE" in out
    path.write_text(json.dumps({"no_such_option": 1}))
    code, _, err = cli(capsys, command, "--config", str(path))
    assert code == 2 and "unknown option 'no_such_option'" in err and "valid options:" in err
