"""The plots and the training log of a run, and Table 1 as a chart."""

from __future__ import annotations

import json
import logging
import sys

import numpy as np
import pytest

from hierarchical_vl.hub import render_checkpoint_card
from hierarchical_vl.training import plots
from hierarchical_vl.training.arguments import load_training_arguments
from hierarchical_vl.training.experiments import TABLE1_COLUMNS, Table1Result, TableRow
from hierarchical_vl.training.run import _run_losses, train_from_arguments
from hierarchical_vl.training_records import TRAINING_LOG_FILE, read_training_log

from .conftest import write_config

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _assert_drawn_png(path, min_width=300):
    """A valid PNG (its signature, decodable) with a drawing on it: many colours, not a blank canvas."""
    from PIL import Image

    assert path.is_file() and path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.shape[1] >= min_width and pixels.shape[0] >= 200
    colours = np.unique(pixels.reshape(-1, 3), axis=0)
    assert len(colours) > 20
    assert (pixels < 250).any(axis=2).mean() > 0.01  # more than a white page with a frame


@pytest.fixture(scope="module")
def run(tiny_corpus, tmp_path_factory):
    pytest.importorskip("matplotlib")
    directory = tmp_path_factory.mktemp("plotted")
    args = load_training_arguments(write_config(directory / "config.yaml", tiny_corpus, directory / "out"))
    return directory / "out", train_from_arguments(args)


def test_a_run_writes_its_plots_and_log(run):
    out, result = run
    _assert_drawn_png(out / "plots" / "losses.png")
    _assert_drawn_png(out / "plots" / "metrics.png")
    log = read_training_log(out)
    assert [update for update, _, _ in log["losses"]] == list(range(1, result.updates + 1))
    assert [task for _, task, _ in log["losses"][:8]] == ["grounding"] * 8
    assert {task for _, task, _ in log["losses"][8:]} == {"grounding", "vqa"}
    assert log["evaluations"] == json.loads(json.dumps(result.evaluations))
    assert log["stage_updates"] == {"grounding": 8, "all": 20} and log["updates"] == 28
    assert log["losses"][-1][2] == pytest.approx(
        [loss for _, task, loss in log["losses"] if task == log["losses"][-1][1]][-1]
    )
    # the model card of the run says what it did
    card = render_checkpoint_card(out)
    assert "1. Visual grounding (cycle C = 4; #iter grounding 8; 8 updates)" in card
    assert (
        "2. Visual grounding + Visual question answering (cycle C = 5; #iter grounding 8, vqa 12; 20 updates)" in card
    )
    assert "| Visual grounding | Flickr30k Entities | " in card


def test_resumed_run_keeps_the_losses_logged_before(tmp_path):
    (tmp_path / TRAINING_LOG_FILE).write_text(
        json.dumps({"losses": [[1, "vqa", 0.9], [2, "vqa", 0.8], [3, "vqa", 0.7]]})
    )
    assert _run_losses(tmp_path, [(3, "vqa", 0.6), (4, "vqa", 0.5)]) == [
        (1, "vqa", 0.9),
        (2, "vqa", 0.8),
        (3, "vqa", 0.6),
        (4, "vqa", 0.5),
    ]
    assert _run_losses(tmp_path / "none", [(1, "vqa", 0.6)]) == [(1, "vqa", 0.6)]


def test_plots_from_records(tmp_path):
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(0)
    losses = [
        (update, ("vqa", "retrieval")[update % 2], float(1 / update + rng.uniform(0, 0.1))) for update in range(1, 200)
    ]
    evaluations = [
        {
            "update": update,
            "stage": "all",
            "vqa/overall": 30 + update / 10,
            "vqa/num_questions": 10,
            "retrieval/rsum": 90,
        }
        for update in (50, 100, 199)
    ]
    written = plots.write_training_plots(tmp_path, losses, evaluations)
    assert written == [tmp_path / "plots" / "losses.png", tmp_path / "plots" / "metrics.png"]
    for path in written:
        _assert_drawn_png(path)
    assert plots.plot_metrics([{"update": 1, "stage": "x"}], tmp_path / "empty.png") is None  # nothing to draw
    assert not (tmp_path / "empty.png").exists()


def test_table1_chart(tmp_path):
    pytest.importorskip("matplotlib")
    rows = [
        TableRow("VQA", "combination", ["vqa"], {"vqa": 10}, per_seed=[{"vqa/overall": 40.0}, {"vqa/overall": 44.0}]),
        TableRow(
            "VQA+ICR+VG",
            "combination",
            ["vqa", "retrieval", "grounding"],
            {"vqa": 10, "retrieval": 5, "grounding": 5},
            per_seed=[
                {"vqa/overall": 42.0, "retrieval/i2t_r1": 9.0, "retrieval/t2i_r1": 8.0, "grounding/r1": 47.0},
                {"vqa/overall": 43.0, "retrieval/i2t_r1": 11.0, "retrieval/t2i_r1": 7.0, "grounding/r1": 45.0},
            ],
        ),
        TableRow("prior", "prior", per_seed=[{"vqa/overall": 30.0, "grounding/r1": 20.0}]),
    ]
    result = Table1Result(seeds=[0, 1], rows=rows, splits={"vqa": "val"})
    path = plots.plot_table1(result, TABLE1_COLUMNS, tmp_path / "table1.png")
    assert path == tmp_path / "table1.png"
    _assert_drawn_png(path)


def test_without_matplotlib_one_warning_and_no_plots(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    monkeypatch.setattr(plots, "_warned", False)
    with caplog.at_level(logging.WARNING, logger="hierarchical_vl"):
        assert plots.write_training_plots(tmp_path, [(1, "vqa", 0.5)], [{"update": 1, "vqa/overall": 1.0}]) == []
        assert plots.plot_losses([(1, "vqa", 0.5)], tmp_path / "again.png") is None
    assert [record.getMessage() for record in caplog.records].count(
        "matplotlib is not installed: no plots are written (pip install matplotlib)"
    ) == 1
    assert not (tmp_path / "plots").exists()
