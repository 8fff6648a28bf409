"""``hvl evaluate`` with streamed region features (``--features parquet:PATH``): the metrics of the store."""

from __future__ import annotations

import json

import pytest

from hierarchical_vl.cli import main
from hierarchical_vl.data import export_store_to_parquet
from hierarchical_vl.evaluation import CorpusLayout, load_evaluation_data, open_region_store
from hierarchical_vl.evaluation.evaluation_data import streamed_feature_source


@pytest.fixture(scope="module")
def export(demo, tmp_path_factory):
    store = open_region_store("features/region_features.tsv", progress=False, root=demo["corpus"])
    out = tmp_path_factory.mktemp("export") / "demo.parquet"
    export_store_to_parquet(store, out, rows_per_shard=4, progress=False)
    return out, store


def _evaluate(demo, output, *arguments):
    command = ["evaluate", str(demo["multitask"]), "--data-dir", str(demo["corpus"]), "--no-progress"]
    assert main([*command, "--task", "all", "--split", "val", "--output", str(output), *arguments]) == 0
    return json.loads(output.read_text())


def test_evaluate_from_the_stream_equals_the_store(demo, export, tmp_path):
    path, _ = export
    from_store = _evaluate(demo, tmp_path / "store.json")
    from_stream = _evaluate(demo, tmp_path / "stream.json", "--features", f"parquet:{path}")
    info = from_stream.pop("info"), from_store.pop("info")  # timings and the output files differ
    assert from_stream == from_store and set(info[0]) == set(info[1])
    assert from_stream["metrics"]["vqa/overall"] == from_store["metrics"]["vqa/overall"]


def test_the_stream_is_read_for_the_split_images_only(demo, export):
    path, store = export
    layout = CorpusLayout(root=path.parent, features=f"parquet:{path.name}", vqa_dir=str(demo["corpus"] / "vqa"))
    data = load_evaluation_data(layout, ["vqa"], "val", demo["tokenizer"], config=None, answer_vocab=["yes", "no"])
    val_images = {str(image_id) for image_id in data.datasets["vqa"].image_ids.tolist()}
    assert set(data.store.image_ids.tolist()) == val_images and len(val_images) < len(store)
    for image_id in val_images:
        assert (data.store[image_id]["features"] == store[image_id]["features"]).all()
        assert (data.store[image_id]["boxes"] == store[image_id]["boxes"]).all()


def test_streamed_sources_are_named_by_prefix(tmp_path):
    assert streamed_feature_source("hf://datasets/org/name@main") == "hf://datasets/org/name@main"
    assert streamed_feature_source("parquet:exports/coco", tmp_path) == str(tmp_path / "exports" / "coco")
    assert streamed_feature_source("parquet:/abs/coco", tmp_path) == "/abs/coco"
    assert streamed_feature_source("features/region_features.tsv", tmp_path) is None
    assert streamed_feature_source({"coco": ["a.tsv"]}, tmp_path) is None
    with pytest.raises(ValueError, match="only feature source"):
        streamed_feature_source(["a.tsv", "hf://datasets/org/name"])
    with pytest.raises(ValueError, match="streams"):
        open_region_store("hf://datasets/org/name")


def test_local_sources_are_not_streamed(tmp_path):
    assert streamed_feature_source(tmp_path / "features.tsv") is None
    assert streamed_feature_source([tmp_path / "a.tsv", "b.tsv"]) is None
    with pytest.raises(ValueError, match="only feature source"):
        streamed_feature_source({"coco": "parquet:coco", "flickr30k": ["f.tsv"]})
