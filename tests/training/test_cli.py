"""``hvl train`` and ``hvl search-layers`` on the tiny corpus."""

import json

import pytest

from hierarchical_vl.cli import main
from hierarchical_vl.training.checkpointing import CheckpointManager

from .conftest import write_config


def test_hvl_train_with_overrides(tiny_corpus, tmp_path, capsys):
    config = write_config(tmp_path / "config.yaml", tiny_corpus, tmp_path / "ignored")
    code = main(
        [
            "train",
            str(config),
            "tasks.vqa.iterations=6",
            "curriculum.1.cycle_length=4",
            "--output-dir",
            str(tmp_path / "out"),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    # Stage 1: 8 grounding updates. Stage 2: 8 + 6 iterations, C = 4: round(4 * 8/14) = 2 grounding and
    # round(4 * 6/14) = 2 VQA updates per cycle, floor(14 / 4) = 3 cycles -> 12 updates.
    assert "trained 20 updates" in out
    state = CheckpointManager.verify(CheckpointManager(tmp_path / "out" / "checkpoints").checkpoints()[-1])
    assert state["stage"] == 2 and state["schedule"] is None


def test_hvl_search_layers(tiny_corpus, tmp_path, capsys):
    config = write_config(tmp_path / "config.yaml", tiny_corpus, tmp_path / "out")
    code = main(
        [
            "search-layers",
            "--task",
            "grounding",
            "--layers",
            "1-3",
            "--iterations",
            "4",
            "--config",
            str(config),
            "--output-dir",
            str(tmp_path / "search"),
            "--output-json",
            str(tmp_path / "table.json"),
        ]
    )
    assert code == 0
    table = json.loads((tmp_path / "table.json").read_text())
    assert sorted(table["rows"]) == ["1", "2", "3"] and table["metric"] == "grounding/r1"
    best = max(table["rows"], key=lambda layer: table["rows"][layer]["grounding/r1"])
    assert table["best_layer"] == int(best)
    assert "layer search for grounding" in capsys.readouterr().out
    for layer in (1, 2, 3):
        assert (tmp_path / "search" / f"grounding_layer{layer}" / "model.safetensors").exists()


def test_overrides_after_flags_join_the_overrides(tmp_path, monkeypatch, capsys):
    from hierarchical_vl.training import commands

    seen = {}

    def fake_train(args):
        seen.update(overrides=args.overrides, fragment=args.fragment, output_dir=args.output_dir)
        return 0

    monkeypatch.setattr(commands, "_train", fake_train)  # the parser is built inside main(): it takes this one
    fragment = tmp_path / "fragment.yaml"
    argv = ["train", "demo", "seed=1", "--fragment", str(fragment), "data.root=/data", "--output-dir", "x", "a.b=2"]
    assert main(argv) == 0
    assert seen == {"overrides": ["seed=1", "data.root=/data", "a.b=2"], "fragment": [str(fragment)], "output_dir": "x"}
    with pytest.raises(SystemExit):
        main(["train", "demo", "--no-such-flag"])
    assert "unrecognized arguments: --no-such-flag" in capsys.readouterr().err
