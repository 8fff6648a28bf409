"""One torch thread per test process: these tests run many tiny operations, which OpenMP spin-waiting makes slow
when several test processes share the cores (``pytest -n``). ``demo``: a generated corpus and fresh tiny checkpoints."""

from __future__ import annotations

import pytest
import torch

from hierarchical_vl import (
    HierarchicalVLConfig,
    HierarchicalVLForImageTextRetrieval,
    HierarchicalVLForMultiTask,
    HierarchicalVLProcessor,
    HierarchicalVLTokenizer,
)
from hierarchical_vl.data import build_vqa_answer_vocab, generate_demo_corpus, iter_json_array


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A 30-image demo corpus with 20-d features, and fresh tiny checkpoints built from its text."""
    root = tmp_path_factory.mktemp("demo")
    paths = generate_demo_corpus(
        root / "corpus",
        num_images=30,
        seed=0,
        feature_dim=20,
        min_regions=4,
        max_regions=12,
        questions_per_image=3,
    )
    texts = [q["question"] for file in paths.vqa_questions.values() for q in iter_json_array(file, "questions")]
    texts += [s["raw"] for image in iter_json_array(paths.karpathy_captions, "images") for s in image["sentences"]]
    tokenizer = HierarchicalVLTokenizer.from_texts(texts)
    answers = build_vqa_answer_vocab(paths.vqa_annotations["train2014"], min_count=1)
    config = HierarchicalVLConfig.from_preset(
        "tiny",
        vocab_size=len(tokenizer),
        id2label=dict(enumerate(answers)),
        label2id={answer: index for index, answer in enumerate(answers)},
    )
    checkpoints = {}
    for name, cls in (
        ("multitask", HierarchicalVLForMultiTask),
        ("retrieval", HierarchicalVLForImageTextRetrieval),
    ):
        torch.manual_seed(0)
        checkpoints[name] = root / name
        cls(config).save_pretrained(checkpoints[name])
        HierarchicalVLProcessor(tokenizer).save_pretrained(checkpoints[name])
    return {"root": root, "corpus": paths.root, "paths": paths, "tokenizer": tokenizer, **checkpoints}
