"""A poisoned feature dump is refused by ``hvl evaluate --features`` and ``hvl train data.features=`` without running
its payload; a store given directly that is older than its sources is refused."""

from __future__ import annotations

import os
import pickle
import shutil

import pytest

from hierarchical_vl import (
    HierarchicalVLConfig,
    HierarchicalVLForMultiTask,
    HierarchicalVLProcessor,
    HierarchicalVLTokenizer,
)
from hierarchical_vl.cli import main
from hierarchical_vl.data import generate_demo_corpus
from hierarchical_vl.evaluation.evaluation_data import open_region_store

from .conftest import write_config


class _Evil:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def poisoned(tmp_path_factory):
    import lmdb

    root = tmp_path_factory.mktemp("poisoned")
    paths = generate_demo_corpus(
        root / "corpus",
        num_images=40,
        seed=3,
        feature_dim=32,
        min_regions=6,
        max_regions=12,
        feature_formats=("tsv", "lmdb"),
    )
    lmdb_path = paths.extra_features["lmdb"]
    env = lmdb.open(str(lmdb_path), subdir=True)
    with env.begin(write=True) as txn:
        key = next(k for k, _ in txn.cursor() if k != b"keys")
        value = pickle.loads(txn.get(key))  # our own file
        value["extra"] = _Evil(root / "pwned")
        txn.put(key, pickle.dumps(value))
    env.close()
    return root, paths, lmdb_path


def _run(argv, capsys):
    try:
        code = main(argv)
    except Exception as error:  # a library error surfacing through the command is acceptable, running code is not
        return 1, str(error)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_hvl_train_refuses_a_poisoned_dump(poisoned, tmp_path, capsys):
    root, paths, lmdb_path = poisoned
    config = write_config(tmp_path / "config.yaml", paths.root, tmp_path / "out")
    code, output = _run(["train", str(config), f"data.features={lmdb_path}"], capsys)
    assert code != 0 and "system" in output
    assert not (root / "pwned").exists()


def test_hvl_evaluate_refuses_a_poisoned_dump(poisoned, tmp_path, capsys):
    root, paths, lmdb_path = poisoned
    tokenizer = HierarchicalVLTokenizer.from_texts(["what is it", "a cube"])
    config = HierarchicalVLConfig.from_preset("tiny", region_feature_dim=32, vocab_size=len(tokenizer))
    checkpoint = tmp_path / "checkpoint"
    HierarchicalVLForMultiTask(config).save_pretrained(checkpoint)
    HierarchicalVLProcessor.from_config(tokenizer, config).save_pretrained(checkpoint)
    argv = ["evaluate", str(checkpoint), "--task", "retrieval", "--data-dir", str(paths.root), "--split", "test"]
    code, output = _run([*argv, "--features", str(lmdb_path), "--no-progress"], capsys)
    assert code != 0 and "system" in output
    assert not (root / "pwned").exists()


def test_a_store_given_directly_that_is_older_than_its_sources_is_refused(poisoned, tmp_path):
    _, paths, _ = poisoned
    source = tmp_path / "features.tsv"
    shutil.copy(paths.features_tsv, source)
    store = open_region_store(source, tmp_path / "features.store", progress=False)
    assert len(store) == 40
    with open(source, "r+b") as handle:  # one byte of the last line changes
        handle.seek(-10, os.SEEK_END)
        byte = handle.read(1)
        handle.seek(-10, os.SEEK_END)
        handle.write(b"A" if byte != b"A" else b"B")
    with pytest.raises(ValueError, match=r"is stale.*hvl features convert"):
        open_region_store(tmp_path / "features.store", progress=False)
