"""Mistakes in a GloVe file or a training configuration get one clear line, naming the problem."""

from __future__ import annotations

import pytest

from hierarchical_vl import load_glove_embeddings
from hierarchical_vl.training.arguments import load_training_arguments


def test_glove_file_of_another_width_is_refused(tmp_path):
    path = tmp_path / "glove.8d.txt"
    path.write_text("the " + " ".join(["0.5"] * 8) + "\ncube " + " ".join(["0.25"] * 8) + "\n")
    vocab = {"<pad>": 0, "<unk>": 1, "the": 2, "cube": 3}
    with pytest.raises(
        ValueError, match=r"glove\.8d\.txt:1: the file's vectors have 8 numbers, but the word embeddings have 4"
    ):
        load_glove_embeddings(path, vocab, dim=4)
    matrix, coverage = load_glove_embeddings(path, vocab, dim=8)
    assert coverage.found == 2 and matrix[3].tolist() == [0.25] * 8


def test_misspelt_configuration_field_suggests_the_right_one():
    with pytest.raises(ValueError, match=r"unknown field\(s\) 'data.featurs' \(did you mean 'data.features'\?\)"):
        load_training_arguments("demo", ["data.featurs=x"])
    with pytest.raises(ValueError, match=r"'optimizer.learning_rate'; valid fields"):  # nothing close: no suggestion
        load_training_arguments("demo", ["optimizer.learning_rate=0.1"])
