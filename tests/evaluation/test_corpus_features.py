"""Region features named per corpus: one store keyed by corpus image id, found again, converted again when the
corpora change, and read by each task in its own corpus."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from training.release_layout import COLLIDING_ID, FLICKR30K_IMAGES, write_release_layout

from hierarchical_vl.data.corpora import check_corpus_name, corpus_image_id, with_corpus_image_ids
from hierarchical_vl.data.feature_readers import RegionFeatureRecord
from hierarchical_vl.data.feature_writers import write_bottom_up_tsv
from hierarchical_vl.evaluation.commands import _features_argument
from hierarchical_vl.evaluation.evaluation_data import (
    CorpusLayout,
    corpus_feature_sources,
    load_evaluation_data,
    open_region_store,
)
from hierarchical_vl.tokenization_hierarchical_vl import HierarchicalVLTokenizer

FEATURES = {"coco": ["bottom_up/trainval"], "flickr30k": "bottom_up/flickr30k"}


def _records(ids: list[int], value: float) -> list[RegionFeatureRecord]:
    return [
        RegionFeatureRecord(
            str(i), 10.0, 10.0, np.array([[0, 0, 5, 5]], np.float32), np.full((1, 4), value, np.float32)
        )
        for i in ids
    ]


@pytest.fixture
def sources(tmp_path):
    write_bottom_up_tsv(tmp_path / "bottom_up" / "trainval" / "coco.tsv.0", _records([7, 9], 1.0))
    write_bottom_up_tsv(tmp_path / "bottom_up" / "trainval" / "coco.tsv.1", _records([11], 1.0))
    write_bottom_up_tsv(tmp_path / "bottom_up" / "flickr30k" / "flickr.tsv", _records([9, 12], 2.0))  # 9: both
    return tmp_path


def test_corpus_image_ids():
    assert corpus_image_id("flickr30k", "036979") == corpus_image_id("flickr30k", 36979) == "flickr30k/36979"
    rows = with_corpus_image_ids([{"image_id": 42, "caption": "a cat"}], "coco")
    assert rows == [{"image_id": "coco/42", "caption": "a cat"}]
    for bad in ("", "co/co", "two words", 3):
        with pytest.raises(ValueError, match="not a corpus name"):
            check_corpus_name(bad)


def test_mapping_converts_into_one_store_keyed_by_corpus(sources, caplog):
    pairs = corpus_feature_sources(FEATURES, sources)
    assert [(corpus, path.name) for corpus, path in pairs] == [
        ("coco", "coco.tsv.0"),
        ("coco", "coco.tsv.1"),
        ("flickr30k", "flickr.tsv"),
    ]
    store = open_region_store(FEATURES, progress=False, root=sources)
    assert store.path == (sources / "bottom_up" / "region_features.store").absolute()
    assert sorted(store) == ["coco/11", "coco/7", "coco/9", "flickr30k/12", "flickr30k/9"]
    assert float(store["coco/9"]["features"][0, 0]) == 1.0 and float(store["flickr30k/9"]["features"][0, 0]) == 2.0
    assert store.metadata["source_corpora"] == ["coco", "coco", "flickr30k"]
    assert CorpusLayout(root=sources, features=store.path).corpus_keyed  # the store given directly, alone

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="hierarchical_vl"):
        assert open_region_store(FEATURES, progress=False, root=sources).path == store.path  # found again
    assert not caplog.records  # neither converted again nor warned about
    renamed = {"mscoco": FEATURES["coco"], "flickr30k": FEATURES["flickr30k"]}
    with caplog.at_level(logging.WARNING):
        store = open_region_store(renamed, store.path, progress=False, root=sources)
    assert "converted for the corpora" in caplog.text and "mscoco/9" in store and "coco/9" not in store


def test_a_stale_keyed_store_given_alone_is_refused(sources):
    store = open_region_store(FEATURES, progress=False, root=sources)
    write_bottom_up_tsv(sources / "bottom_up" / "flickr30k" / "flickr.tsv", _records([9], 3.0))
    with pytest.raises(ValueError, match=r"is stale.*per corpus \(coco, flickr30k\)"):
        open_region_store(store.path, progress=False)


def test_an_unnamed_store_is_converted_again_for_corpora(sources, caplog):
    """The paper presets' store of the list form, at the place the mapping form converts to, is replaced."""
    store = open_region_store(["bottom_up/trainval"], sources / "shared.store", progress=False, root=sources)
    assert sorted(store) == ["11", "7", "9"] and not CorpusLayout(root=sources, features=store.path).corpus_keyed
    with caplog.at_level(logging.WARNING):
        store = open_region_store(FEATURES, sources / "shared.store", progress=False, root=sources)
    assert "converted for the corpora None" in caplog.text and sorted(store)[0] == "coco/11"
    assert "flickr30k/9" in store


def test_mapping_refuses_stores_and_bad_names(sources):
    store = open_region_store("bottom_up/flickr30k/flickr.tsv", progress=False, root=sources)
    with pytest.raises(ValueError, match="is not converted again"):
        corpus_feature_sources({"coco": "bottom_up/trainval", "flickr30k": str(store.path)}, sources)
    with pytest.raises(ValueError, match="not a corpus name"):
        corpus_feature_sources({"co co": "bottom_up/trainval"}, sources)
    with pytest.raises(ValueError, match="no corpus"):
        corpus_feature_sources({}, sources)


def test_evaluate_features_argument():
    assert _features_argument(None) == "features/region_features.tsv"
    assert _features_argument(["a.tsv"]) == "a.tsv"
    assert _features_argument(["a.tsv", "b.tsv"]) == ["a.tsv", "b.tsv"]
    assert _features_argument(["coco=a", "flickr30k=b", "coco=c"]) == {"coco": ["a", "c"], "flickr30k": ["b"]}
    with pytest.raises(ValueError, match="every source"):
        _features_argument(["coco=a", "b"])


def test_evaluation_reads_each_task_in_its_corpus(tmp_path):
    release = write_release_layout(tmp_path, feature_dim=20, glove_dim=8)
    store = open_region_store(FEATURES, tmp_path / "keyed.store", progress=False, root=tmp_path)
    layout = CorpusLayout(
        root=tmp_path,
        features=store.path,  # the keyed store given directly, as `hvl evaluate --features` does
        captions_file="karpathy/dataset_flickr30k.json",
        entities_dir="flickr30k_entities",
    )
    assert layout.task_corpus("retrieval") == "flickr30k" and layout.task_corpus("grounding") == "flickr30k"
    tokenizer = HierarchicalVLTokenizer.from_texts(["a man walks past a red dog on the street"])
    data = load_evaluation_data(layout, ["retrieval", "grounding"], "train", tokenizer, progress=False)
    for task in ("retrieval", "grounding"):
        dataset = data.for_task(task)
        ids = np.asarray(dataset.image_ids).astype(str)
        assert {int(i.split("/")[1]) for i in ids} == set(FLICKR30K_IMAGES["train"])
        rows = np.flatnonzero(ids == f"flickr30k/{COLLIDING_ID}")
        assert set(dataset.image_index[rows].tolist()) == {store.index_of(f"flickr30k/{COLLIDING_ID}")}
    flickr = release.records["flickr30k"][COLLIDING_ID]
    np.testing.assert_allclose(store[f"flickr30k/{COLLIDING_ID}"]["boxes"], flickr.boxes)
