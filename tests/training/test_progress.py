"""Readable output: a progress line every few seconds on a non-terminal, a bar on a terminal, nothing with
``--no-progress`` (transformers' bars included)."""

import io
import logging

import pytest
from huggingface_hub.utils import are_progress_bars_disabled
from transformers.utils import logging as transformers_logging

from hierarchical_vl.cli import main
from hierarchical_vl.progress_bars import progress_bars_disabled
from hierarchical_vl.training.progress import StageProgress, progress_mode

from .conftest import write_config


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_mode():
    assert progress_mode(True, stream=_Terminal()) == "bar"
    assert progress_mode(True, stream=io.StringIO()) == "lines"
    assert progress_mode("lines", stream=_Terminal()) == "lines"
    assert progress_mode("bar", stream=io.StringIO()) == "bar"
    assert progress_mode(False) == progress_mode(True, enabled=False) == "off"
    with pytest.raises(ValueError, match="progress must be one of"):
        progress_mode("dots")


def test_lines_every_n_seconds(caplog):
    now = [0.0]
    progress = StageProgress("all", 100, initial=20, mode="lines", every_seconds=30, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="hierarchical_vl.training.progress"):
        for update in range(80):
            now[0] += 1.0  # one update per second
            progress.update("vqa" if update % 2 else "grounding")
            if update == 40:
                progress.set_losses({"grounding": 0.5, "vqa": 3.25}, 1e-3)
        progress.close()
    lines = [record.getMessage() for record in caplog.records]
    assert lines == [
        "[all] vqa: update 50/100 (50%), 1.00 updates/s, ETA 50s",
        "[all] vqa: update 80/100 (80%), loss grounding 0.500 vqa 3.250, 1.00 updates/s, ETA 20s",
        "[all] vqa: update 100/100 (100%), loss grounding 0.500 vqa 3.250, 1.00 updates/s",
    ]


def test_a_log_file_gets_lines_not_redraws(tiny_corpus, tmp_path, capsys):
    config = write_config(tmp_path / "c.yaml", tiny_corpus, tmp_path / "out")
    assert main(["train", str(config), "progress=true", "progress_every=0"]) == 0  # pytest's stderr: no terminal
    captured = capsys.readouterr()
    assert "\r" not in captured.err and "it/s" not in captured.err
    lines = [line for line in captured.out.splitlines() if line.startswith("[all] ")]
    assert lines[-1].startswith("[all] vqa: update 20/20 (100%), loss ")
    assert len(lines) == 20  # progress_every=0: one per update


def test_no_progress_silences_every_bar(tiny_corpus, tmp_path, capsys):
    config = write_config(tmp_path / "c.yaml", tiny_corpus, tmp_path / "out")
    before = transformers_logging.is_progress_bar_enabled()
    assert main(["train", str(config), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "it/s" not in captured.err and "%|" not in captured.err, captured.err  # transformers' shard bars too
    assert "updates/s" not in captured.out
    assert transformers_logging.is_progress_bar_enabled() == before  # restored after the command


def test_progress_bars_disabled_restores_the_state():
    was_enabled = transformers_logging.is_progress_bar_enabled()
    transformers_logging.enable_progress_bar()
    try:
        with progress_bars_disabled():
            assert not transformers_logging.is_progress_bar_enabled() and are_progress_bars_disabled()
        assert transformers_logging.is_progress_bar_enabled() and not are_progress_bars_disabled()
        with progress_bars_disabled(False):
            assert transformers_logging.is_progress_bar_enabled()
    finally:
        if not was_enabled:
            transformers_logging.disable_progress_bar()
