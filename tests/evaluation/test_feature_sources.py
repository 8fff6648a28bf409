"""Region features as the releases come: several TSV files (a list, a glob or a directory of shards) converted once
into one store that follows all of them."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest

from hierarchical_vl.data.feature_readers import RegionFeatureRecord
from hierarchical_vl.data.feature_writers import write_bottom_up_tsv, write_npz_directory
from hierarchical_vl.evaluation.evaluation_data import feature_sources, open_region_store


def _records(ids: list[int], width: int = 4) -> list[RegionFeatureRecord]:
    rng = np.random.default_rng(len(ids))
    return [
        RegionFeatureRecord(
            image_id=str(image_id),
            boxes=np.array([[0, 0, 5, 5], [1, 1, 8, 8]], dtype=np.float32),
            features=rng.random((2, width), dtype=np.float32),
            width=10.0,
            height=10.0,
        )
        for image_id in ids
    ]


@pytest.fixture
def release(tmp_path):
    """COCO's adaptive release (a directory of shards, ``.tsv.<n>`` names included) and Flickr30k's apart."""
    trainval = tmp_path / "bottom_up" / "trainval"
    write_bottom_up_tsv(trainval / "karpathy_train_resnet101_faster_rcnn_genome.tsv.0", _records([9, 25]))
    write_bottom_up_tsv(trainval / "karpathy_train_resnet101_faster_rcnn_genome.tsv.1", _records([30]))
    write_bottom_up_tsv(trainval / "karpathy_val_resnet101_faster_rcnn_genome.tsv", _records([136, 139, 143]))
    (trainval / ".hidden.tsv").write_text("not a shard\n")
    flickr = tmp_path / "bottom_up" / "flickr30k"
    write_bottom_up_tsv(flickr / "flickr30k_a.tsv", _records([1000092795]))
    write_bottom_up_tsv(flickr / "flickr30k_b.tsv", _records([10002456, 1000268201, 1000344755]))
    return tmp_path


def test_sources_of_a_list_a_glob_and_a_directory_of_shards(release):
    trainval = release / "bottom_up" / "trainval"
    shards = [
        trainval / "karpathy_train_resnet101_faster_rcnn_genome.tsv.0",
        trainval / "karpathy_train_resnet101_faster_rcnn_genome.tsv.1",
        trainval / "karpathy_val_resnet101_faster_rcnn_genome.tsv",
    ]
    assert feature_sources("bottom_up/trainval", release) == shards
    assert feature_sources("bottom_up/trainval/*.tsv*", release) == shards
    flickr = [release / "bottom_up" / "flickr30k" / f"flickr30k_{x}.tsv" for x in "ab"]
    assert feature_sources(["bottom_up/trainval", "bottom_up/flickr30k/flickr30k_b.tsv"], release) == [
        *shards,
        flickr[1],
    ]
    one = release / "bottom_up" / "flickr30k" / "flickr30k_a.tsv"
    assert feature_sources(one) == [one]  # one file: as given
    with pytest.raises(FileNotFoundError, match="no region-feature files match"):
        feature_sources("bottom_up/test2015/*.tsv", release)
    with pytest.raises(ValueError, match="no region-feature sources"):
        feature_sources([])


def test_several_sources_convert_into_one_store_that_follows_them(release, caplog):
    features = ["bottom_up/trainval", "bottom_up/flickr30k"]
    store = open_region_store(features, release / "bottom_up" / "all.store", progress=False, root=release)
    assert sorted(store, key=int) == [
        "9",
        "25",
        "30",
        "136",
        "139",
        "143",
        "10002456",
        "1000092795",
        "1000268201",
        "1000344755",
    ]
    recorded = [item["path"] for item in store.metadata["source_identity"]]
    assert recorded == [str(path.resolve()) for path in feature_sources(features, release)] and len(recorded) == 5
    assert open_region_store(features, store.path, progress=False, root=release).path == store.path  # reused

    flickr_b = release / "bottom_up" / "flickr30k" / "flickr30k_b.tsv"
    write_bottom_up_tsv(flickr_b, _records([10002456]))  # one shard changed
    with caplog.at_level(logging.WARNING):
        store = open_region_store(features, store.path, progress=False, root=release)
    assert "changed since" in caplog.text and "1000268201" not in store and len(store) == 8

    caplog.clear()
    write_bottom_up_tsv(
        release / "bottom_up" / "trainval" / "karpathy_test_resnet101_faster_rcnn_genome.tsv", _records([164, 192])
    )  # a shard added to the directory
    with caplog.at_level(logging.WARNING):
        store = open_region_store(features, store.path, progress=False, root=release)
    assert "changed since" in caplog.text and "164" in store and len(store) == 10


def test_default_store_places(release):
    store = open_region_store("bottom_up/trainval", progress=False, root=release)  # a directory of shards
    assert store.path == release / "bottom_up" / "trainval.store" and len(store) == 6
    store = open_region_store(["bottom_up/trainval", "bottom_up/flickr30k"], progress=False, root=release)
    assert store.path == (release / "bottom_up" / "region_features.store").absolute() and len(store) == 10


def test_one_source_opens_as_before(release, tmp_path):
    tsv = release / "bottom_up" / "flickr30k" / "flickr30k_b.tsv"
    store = open_region_store(tsv, progress=False)
    assert store.path == tsv.with_name("flickr30k_b.tsv.store") and len(store) == 3
    assert store.metadata["sources"] == [str(tsv)]
    assert open_region_store(store.path, progress=False).path == store.path  # a store given directly
    npz = write_npz_directory(tmp_path / "npz", _records([5, 6]))  # a directory in another format stays one source
    assert feature_sources(npz) == [npz] and len(open_region_store(npz, progress=False)) == 2
    with pytest.raises(ValueError, match="must be the only feature source"):
        open_region_store([store.path, tsv], progress=False)
    with pytest.raises(FileNotFoundError, match="no region features at"):
        open_region_store([tsv, tmp_path / "missing.tsv"], progress=False)
    assert os.path.exists(tsv)
