"""``hvl search``: the single-task grid search of Sec. 4.2 on the tiny corpus, selected on validation only."""

import json

import pytest
import yaml

from hierarchical_vl.cli import main
from hierarchical_vl.training import layer_search
from hierarchical_vl.training.arguments import load_training_arguments
from hierarchical_vl.training.layer_search import SearchGrid

from .conftest import write_config


def _search(config, out, *extra):
    return main(["search", "--task", "grounding", "--config", str(config), "--output-dir", str(out), *extra])


def test_grid_search_selects_on_val_writes_every_point_and_resumes(tiny_corpus, tmp_path, capsys, monkeypatch):
    config = write_config(tmp_path / "config.yaml", tiny_corpus, tmp_path / "out")
    splits = []
    prepare = layer_search.prepare_data
    monkeypatch.setattr(
        layer_search, "prepare_data", lambda args: splits.append(args.data.splits("grounding")) or prepare(args)
    )
    out = tmp_path / "search"
    assert _search(config, out, "--layers", "1,2", "--iterations", "2,3", "--lr-step", "2") == 0
    assert splits == [(["train"], "val")]  # the configuration evaluates on test; the search on val
    results = json.loads((out / "search.json").read_text())
    assert results["split"] == "val" and results["seed"] == 7 and results["metric"] == "grounding/r1"
    assert results["protocol"]["name"] == "current" and results["protocol"]["box_matching"] == "any"
    points = [(p["layer"], p["iterations"], p["lr_step"], p["batch_size"]) for p in results["points"]]
    assert points == [(1, 2, 2, 4), (1, 3, 2, 4), (2, 2, 2, 4), (2, 3, 2, 4)]
    best = max(results["points"], key=lambda p: p["scores"]["grounding/r1"])
    assert results["chosen"] == {k: best[k] for k in ("layer", "iterations", "lr_step", "batch_size")}
    table = capsys.readouterr().out
    assert table.count("<- best") == 1 and len([line for line in table.splitlines() if line[:5].strip().isdigit()]) == 4
    fragment = yaml.safe_load((out / "best_grounding.yaml").read_text())
    assert fragment["model_overrides"] == {"task_layers": {"grounding": best["layer"]}}
    assert fragment["tasks"] == {"grounding": {k: best[k] for k in ("iterations", "lr_step", "batch_size")}}
    for point in points:
        assert (out / "grounding_layer{}_iter{}_step{}_bs{}".format(*point) / "model.safetensors").exists()

    # same configuration: finished points are reused, not trained again (a larger grid trains only the new point)
    trained = []
    train = layer_search.train_from_arguments
    monkeypatch.setattr(
        layer_search,
        "train_from_arguments",
        lambda args, prepared: trained.append(args.output_dir) or train(args, prepared),
    )
    assert _search(config, out, "--layers", "1-3", "--iterations", "2", "--lr-step", "2") == 0
    assert [path.rsplit("/", 1)[-1] for path in trained] == [
        "grounding_layer3"
    ]  # a layer-only grid names runs by layer
    again = json.loads((out / "search.json").read_text())
    assert again["points"][0]["scores"] == results["points"][0]["scores"]
    assert len(again["other_points"]) == 2  # layer 1-2 with 3 iterations stay on record

    # another configuration (seed) in the same directory is refused, naming the field
    capsys.readouterr()
    assert _search(config, out, "--layers", "1", "seed=8") == 2
    assert "seed: 7 -> 8" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["flag", "config", "grid"])
def test_selecting_on_test_is_refused(tiny_corpus, tmp_path, capsys, where):
    search = {"layers": [1], "split": "test"} if where != "flag" else None
    config = write_config(
        tmp_path / "config.yaml", tiny_corpus, tmp_path / "out", **({"search": search} if where == "config" else {})
    )
    extra = ["--split", "test"] if where == "flag" else []
    if where == "grid":
        (tmp_path / "grid.yaml").write_text(yaml.safe_dump({"search": search}))
        extra = ["--grid", str(tmp_path / "grid.yaml")]
    assert _search(config, tmp_path / "search", *extra) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "search.split: 'test' is not a validation split" in err
    assert not (tmp_path / "search").exists()


def test_grid_from_config_section_and_skipped_points(tiny_corpus, tmp_path):
    config = write_config(
        tmp_path / "config.yaml", tiny_corpus, tmp_path / "out", search={"iterations": [2], "lr_step": [2, 3]}
    )
    assert _search(config, tmp_path / "search") == 0
    results = json.loads((tmp_path / "search" / "search.json").read_text())
    # the configured layer of grounding (the tiny preset's), the configured batch size; lr_step 3 > 2 iterations
    assert [(p["iterations"], p["lr_step"], p["batch_size"]) for p in results["points"]] == [(2, 2, 4)]
    assert results["skipped"] == [{"point": {**results["chosen"], "lr_step": 3}, "reason": "lr_step 3 > iterations 2"}]
    assert load_training_arguments(config).tasks["grounding"].iterations == 8  # hvl train ignores the section


def test_grid_refuses_bad_fields():
    with pytest.raises(ValueError, match=r"search: unknown field\(s\) \['layer'\]"):
        SearchGrid.from_dict({"layer": [1]})
    with pytest.raises(ValueError, match="search.iterations: expected a list of positive integers"):
        SearchGrid(iterations=[0])


def test_train_with_fragments_gets_exactly_their_values(tiny_corpus, tmp_path, capsys):
    config = write_config(tmp_path / "config.yaml", tiny_corpus, tmp_path / "out")
    first = tmp_path / "best_grounding.yaml"
    first.write_text(
        yaml.safe_dump(
            {
                "model_overrides": {"task_layers": {"grounding": 1}},
                "tasks": {"grounding": {"iterations": 3, "lr_step": 2, "batch_size": 5}},
            }
        )
    )
    second = tmp_path / "best_vqa.yaml"
    second.write_text(
        yaml.safe_dump({"model_overrides": {"task_layers": {"vqa": 2}}, "tasks": {"vqa": {"lr_step": 3}}})
    )
    args = load_training_arguments(config, ["tasks.vqa.batch_size=6"], fragments=[first, second])
    assert args.task_layers == {"grounding": 1, "vqa": 2}
    assert vars(args.tasks["grounding"]) == {"iterations": 3, "lr_step": 2, "batch_size": 5}
    assert vars(args.tasks["vqa"]) == {"iterations": 12, "lr_step": 3, "batch_size": 6}
    assert args.model_overrides["region_feature_dim"] == 32  # merged, not replaced

    single = write_config(
        tmp_path / "single.yaml",
        tiny_corpus,
        tmp_path / "out",
        curriculum=[{"name": "grounding", "tasks": ["grounding"], "cycle_length": 3}],
    )
    out = tmp_path / "trained"
    code = main(["train", str(single), "--fragment", str(first), "--output-dir", str(out)])
    assert code == 0 and "trained 3 updates" in capsys.readouterr().out
    saved = yaml.safe_load((out / "training_args.yaml").read_text())
    assert saved["tasks"]["grounding"] == {"iterations": 3, "lr_step": 2, "batch_size": 5}
    assert json.loads((out / "config.json").read_text())["task_layers"]["grounding"] == 1
