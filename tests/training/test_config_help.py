"""The configuration as the command line shows it: every field documented and listed, typos and wrong types named
in one line with a suggestion, flags and KEY=VALUE forms alike, and every flag an error message suggests exists."""

import argparse
import ast
import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from hierarchical_vl.cli import build_parser, main
from hierarchical_vl.training.arguments import (
    DataArguments,
    OptimizerArguments,
    StageArguments,
    TaskArguments,
    TrainingArguments,
    load_training_arguments,
)
from hierarchical_vl.training.config_help import config_fields, docstring_arguments

SOURCE = Path(__file__).resolve().parents[2] / "src" / "hierarchical_vl"


@pytest.mark.parametrize(
    "cls",
    [TrainingArguments, DataArguments, OptimizerArguments, TaskArguments, StageArguments],
    ids=lambda c: c.__name__,
)
def test_every_field_has_a_description(cls):
    described = docstring_arguments(cls)
    names = [item.name for item in dataclasses.fields(cls)]
    assert [name for name in names if not described.get(name)] == []
    assert sorted(set(described) - set(names)) == []  # no description of a field that is gone


def test_help_and_config_fields_list_every_field(capsys):
    keys = [item.key for item in config_fields()]
    assert {
        "output_dir",
        "data.root",
        "optimizer.lr",
        "tasks.<task>.batch_size",
        "curriculum.<i>.partial_cycle",
    } <= set(keys)
    assert len(keys) == len(set(keys))
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = capsys.readouterr().out
    for item in config_fields():
        assert f"  {item.key}: {item.type} = {item.default}" in help_text
    assert "optimizer.lr: float = 0.001\n      Initial learning rate of each stage." in help_text
    assert main(["config", "fields"]) == 0
    assert capsys.readouterr().out.strip() == help_text[help_text.index(f"  {keys[0]}:") :].strip()


def test_config_show_prints_the_effective_configuration(capsys):
    assert main(["config", "show", "demo", "tasks.vqa.batch_size=7", "--seed", "5", "--no-progress"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["tasks"]["vqa"]["batch_size"] == 7 and shown["seed"] == 5 and shown["progress"] is False
    assert shown == yaml.safe_load(
        yaml.safe_dump(
            load_training_arguments("demo", ["tasks.vqa.batch_size=7", "seed=5", "progress=false"])._saved_form()
        )
    )


@pytest.mark.parametrize(
    ("flags", "overrides"),
    [
        (["--output-dir", "runs/x"], ["output_dir=runs/x"]),
        (["--seed", "3"], ["seed=3"]),
        (["--no-progress"], ["progress=false"]),
        (["--progress-lines"], ["progress=lines"]),
        (["--allow-contamination"], ["data.allow_contamination=true"]),
        (["--save-best", "vqa/overall"], ["save_best=vqa/overall"]),
        (["--overwrite-output"], ["overwrite_output_dir=true"]),
    ],
)
def test_flags_and_key_value_forms_agree(flags, overrides, capsys):
    assert main(["config", "show", "demo", *flags]) == 0
    by_flag = capsys.readouterr().out
    assert main(["config", "show", "demo", *overrides]) == 0
    assert by_flag == capsys.readouterr().out
    assert by_flag != yaml.safe_dump(load_training_arguments("demo")._saved_form(), sort_keys=False)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("ouput_dir=x", "unknown field(s) 'ouput_dir' (did you mean 'output_dir'?)"),
        ("data.rooot=x", "unknown field(s) 'data.rooot' (did you mean 'data.root'?)"),
        ("tasks.vqa.batchsize=3", "unknown field(s) 'tasks.vqa.batchsize' (did you mean 'tasks.vqa.batch_size'?)"),
        ("curriculum.0.cycle_lenght=3", "'curriculum.0.cycle_lenght' (did you mean 'curriculum.0.cycle_length'?)"),
        ("keep_last=two", "keep_last: expected int, got 'two'"),
        ("optimizer.lr=fast", "optimizer.lr: expected float, got 'fast'"),
        ("data.max_regions=[3]", "data.max_regions: expected int | None, got [3]"),
        ("data.allow_contamination='yes'", "expected bool, got 'yes' (did you mean true or false, unquoted?)"),
        ("curriculum.0.partial_cycle=3", "curriculum.0.partial_cycle: expected bool, got 3"),
    ],
)
def test_typos_and_wrong_types_are_one_line_with_a_suggestion(override, message, capsys):
    with pytest.raises(ValueError) as error:
        load_training_arguments("demo", [override])
    assert message in str(error.value) and "\n" not in str(error.value)
    assert main(["config", "show", "demo", override]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_a_float_field_takes_exponent_notation_that_yaml_reads_as_text():
    """YAML 1.1 reads ``1e-3`` (no dot) as a string; a float field takes the number it spells."""
    args = load_training_arguments("demo", ["optimizer.lr=1e-3", "optimizer.max_grad_norm=5e0"])
    assert args.optimizer.lr == 0.001 and isinstance(args.optimizer.lr, float)
    assert args.optimizer.max_grad_norm == 5.0
    with pytest.raises(ValueError, match="keep_last: expected int, got '1e3'"):
        load_training_arguments("demo", ["keep_last=1e3"])  # only float fields convert


def _messages_with_flags():
    """(file, flag) for every ``--flag`` named in a string of the package that is not a parser's own definition."""
    found = []
    for path in sorted(SOURCE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        definitions = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") in ("add_argument", "add_parser"):
                definitions.update(id(child) for child in ast.walk(node))
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
            and node.body
            and isinstance(node.body[0], ast.Expr)
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in definitions | docstrings
            ):
                for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*[a-z0-9]", node.value):
                    found.append((path.relative_to(SOURCE).as_posix(), flag))
    return found


def _parser_flags():
    flags = set()

    def visit(parser):
        for action in parser._actions:
            flags.update(action.option_strings)
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    visit(sub)

    visit(build_parser())
    return flags


def test_every_flag_a_message_suggests_exists():
    suggested = _messages_with_flags()
    assert ("data/contamination.py", "--allow-contamination") in suggested
    parsed = _parser_flags()
    assert sorted({item for item in suggested if item[1] not in parsed}) == []


def test_the_contamination_flag_parses_into_its_field(capsys):
    assert main(["config", "show", "demo", "--allow-contamination"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["data"]["allow_contamination"] is True
