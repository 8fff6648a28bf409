"""``hvl metrics vqa --output`` is checked before any scoring work (issue 11, item 8)."""

from __future__ import annotations

import os

import pytest

from hierarchical_vl import cli
from hierarchical_vl.metrics import commands


@pytest.fixture
def metrics_cli(monkeypatch):
    """``cli.main`` with only the metrics commands registered."""
    monkeypatch.setattr(cli, "_COMMAND_MODULES", ("hierarchical_vl.metrics.commands",))
    return cli.main


@pytest.fixture
def vqa_files(tmp_path):
    """Input files; their content does not matter, as no test here gets as far as reading them."""
    paths = {name: tmp_path / f"{name}.json" for name in ("questions", "annotations", "predictions")}
    for path in paths.values():
        path.write_text("[]", encoding="utf-8")
    return paths


def _args(paths, *extra):
    inputs = [f"--{name}={paths[name]}" for name in ("predictions", "questions", "annotations")]
    return ["metrics", "vqa", *inputs, *extra]


@pytest.fixture
def no_scoring(monkeypatch):
    """Makes any scoring work fail the test."""

    def forbidden(*args, **kwargs):
        raise AssertionError("scoring work started before the output path was checked")

    monkeypatch.setattr(commands, "read_vqa_submission", forbidden)
    monkeypatch.setattr(commands, "_vqa_references", forbidden)
    monkeypatch.setattr(commands, "vqa_accuracy", forbidden)


@pytest.mark.parametrize(
    ("make_output", "message"),
    [
        (lambda tmp: tmp, "is a directory; give a file name such as"),
        (lambda tmp: tmp / "predictions.json", "is the --predictions file; refusing to overwrite an input"),
        (lambda tmp: tmp / "questions.json" / "out.json", "questions.json is not a directory"),
        (lambda tmp: tmp / "questions.json" / "sub" / "out.json", "questions.json is not a directory"),
    ],
)
def test_bad_output_is_one_error_line_before_scoring(
    metrics_cli,
    vqa_files,
    tmp_path,
    capsys,
    no_scoring,
    make_output,
    message,
):
    output = make_output(tmp_path)
    before = vqa_files["predictions"].read_bytes()
    assert metrics_cli(_args(vqa_files, "--output", str(output))) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hvl metrics vqa: error: --output ") and message in lines[0], lines
    assert "VQA accuracy" not in captured.out
    assert vqa_files["predictions"].read_bytes() == before


def test_unwritable_parent_is_refused(metrics_cli, vqa_files, tmp_path, capsys, no_scoring):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user that can write anywhere")
        assert metrics_cli(_args(vqa_files, "--output", str(locked / "new" / "out.json"))) == 2
        assert f"directory {locked} is not writable" in capsys.readouterr().err
    finally:
        locked.chmod(0o700)
