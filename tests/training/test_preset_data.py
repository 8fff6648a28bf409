"""Every shipped training preset prepares its data and trains on a corpus in the layout it expects.

The paper presets read the real releases' layout (written tiny by `release_layout`), the others the layout of
``hvl data demo``. Each preset is loaded with only ``data.root`` and overrides that shrink the run, so the paths, file
names and splits of the shipped YAML are what is tested.
"""

from __future__ import annotations

import numpy as np
import pytest

from hierarchical_vl import HierarchicalVLConfig
from hierarchical_vl.data import (
    ContaminationError,
    RegionFeatureError,
    load_flickr30k_entities,
    load_karpathy_captions,
    load_vqa,
)
from hierarchical_vl.training.arguments import available_training_presets, load_training_arguments
from hierarchical_vl.training.run import prepare_data, train_from_arguments

from .release_layout import CAPTIONS_PER_IMAGE, COLLIDING_ID, QUESTIONS, write_release_layout

PRESETS = available_training_presets()
TINY = HierarchicalVLConfig.from_preset("tiny")
DEMO_FEATURE_DIM = 32  # the tiny_corpus fixture's

# What each paper preset trains and evaluates on the release layout: task -> examples, from the layout's counts.
_Q, _C = len(QUESTIONS), CAPTIONS_PER_IMAGE
VQA = {"train": 7 * _Q, "val": 8 * _Q}  # train2014 images; val2014 = restval + val + test images
COCO = {"train": 7 * _C, "restval": 3 * _C, "val": 2 * _C, "test": 3 * _C}
FLICKR = {"train": 5 * _C, "val": 2 * _C, "test": 2 * _C}  # Karpathy Flickr30k captions and Entities sentences
PAPER_EXPECTED = {
    "paper_run1": (
        {"vqa": VQA["train"], "retrieval": COCO["train"], "grounding": FLICKR["train"]},
        {"retrieval": COCO["val"], "grounding": FLICKR["val"]},  # validation during training (protocol: paper)
    ),
    "paper_run2": ({"vqa": VQA["train"] + VQA["val"], "retrieval": COCO["train"], "grounding": FLICKR["train"]}, {}),
    "paper_flickr30k": (
        {"vqa": VQA["train"], "retrieval": FLICKR["train"], "grounding": FLICKR["train"]},
        {"retrieval": FLICKR["val"], "grounding": FLICKR["val"]},
    ),
    "paper_single_vqa": ({"vqa": VQA["train"]}, {"vqa": VQA["val"]}),
    "paper_single_retrieval_coco": ({"retrieval": COCO["train"]}, {"retrieval": COCO["val"]}),
    "paper_single_retrieval_flickr30k": ({"retrieval": FLICKR["train"]}, {"retrieval": FLICKR["val"]}),
    "paper_single_grounding": ({"grounding": FLICKR["train"]}, {"grounding": FLICKR["val"]}),
}


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return write_release_layout(
        tmp_path_factory.mktemp("release"), feature_dim=TINY.region_feature_dim, glove_dim=TINY.word_embedding_dim
    )


def _is_paper_preset(name: str) -> bool:
    if name.startswith("paper"):
        return True
    if name == "demo" or name.startswith("single_"):
        return False
    pytest.fail(f"preset {name!r}: tell this test which corpus layout it expects (release or demo)")


def _shrunk(name: str, root, output_dir, *extra: str):
    """The preset with only ``data.root`` and overrides that make its run tiny."""
    args = load_training_arguments(name)
    overrides = [f"data.root={root}", "model_preset=tiny", f"output_dir={output_dir}", "mixed_precision='no'"]
    overrides += ["num_workers=0", "log_with=[]", "progress=false", "eval_every=0", "save_every=0"]
    for task in args.tasks:
        overrides += [f"tasks.{task}.iterations=3", f"tasks.{task}.lr_step=2", f"tasks.{task}.batch_size=4"]
    overrides += [f"curriculum.{index}.cycle_length=3" for index in range(len(args.curriculum))]
    if not _is_paper_preset(name):
        overrides.append(f"model_overrides.region_feature_dim={DEMO_FEATURE_DIM}")
    return load_training_arguments(name, overrides + list(extra))


def _demo_expected(args, root):
    """The demo layout's counts, read with the loaders: the preset's splits of each task."""
    data = args.data
    counts = {}
    for task in args.trained_tasks:
        counts[task] = sum(_split_rows(task, split, data, root) for split in data.splits(task)[0])
    evaluated = {task: _split_rows(task, data.splits(task)[1], data, root) for task in args.evaluated_tasks}
    return counts, evaluated


def _split_rows(task, split, data, root):
    if task == "vqa":
        return len(load_vqa(root / data.vqa_dir, split=split, answer_vocab=["yes"]))
    if task == "retrieval":
        return len(load_karpathy_captions(root / data.captions_file, split=split))
    rows = load_flickr30k_entities(root / data.entities_dir, split=split)
    return sum(any(p["box_status"] == "box" for p in row["phrases"]) for row in rows)


def _image_ids(dataset, corpus: str = "coco") -> set[int]:
    """The image ids of an encoded dataset within ``corpus`` (the paper presets' store keys them ``coco/42``)."""
    ids = [str(i) for i in np.asarray(dataset.image_ids).tolist()]
    if any("/" in i for i in ids):
        assert all(i.startswith(f"{corpus}/") for i in ids), ids[:5]
        ids = [i.split("/", 1)[1] for i in ids]
    return {int(i) for i in ids}


@pytest.mark.parametrize("name", PRESETS)
def test_preset_prepares_its_corpus_and_trains(name, release, tiny_corpus, tmp_path):
    paper = _is_paper_preset(name)
    root = release.root if paper else tiny_corpus
    args = _shrunk(name, root, tmp_path / "run")
    assert not args.data.allow_contamination, "a shipped preset must pass the contamination guard as it is"
    if paper:
        assert name in PAPER_EXPECTED, f"add the expected example counts of {name!r} to this test"
        expected_train, expected_eval = PAPER_EXPECTED[name]
    else:
        expected_train, expected_eval = _demo_expected(args, root)

    prepared = prepare_data(args)  # the contamination guard runs here and raises on an overlap
    assert {task: len(data) for task, data in prepared.train.items()} == expected_train
    assert {task: len(data) for task, data in prepared.eval.items()} == expected_eval
    if paper:
        flickr_images = sum(len(ids) for ids in release.flickr30k.values())
        assert (
            len(prepared.store) == len(release.coco_split("train2014") + release.coco_split("val2014")) + flickr_images
        )
        if args.data.glove:
            assert (root / args.data.glove).exists()
    if "retrieval" in prepared.train and args.data.captions_file.endswith("dataset_coco.json"):
        retrieval_images = _image_ids(prepared.train["retrieval"])
        if paper:  # the paper's COCO training set: Karpathy train, no restval
            assert retrieval_images == set(release.karpathy_coco("train"))
        else:  # the demo preset keeps training on the demo corpus's restval images too
            assert retrieval_images & set(_restval_ids(root / args.data.captions_file))

    result = train_from_arguments(args, prepared)
    assert result.updates == sum(result.stage_updates.values()) > 0
    assert set(result.final_losses) == set(args.trained_tasks)
    assert all(np.isfinite(loss) for loss in result.final_losses.values())
    assert (tmp_path / "run" / "config.json").exists()


def _restval_ids(captions_file) -> list[int]:
    return list(load_karpathy_captions(captions_file, split="restval")["image_id"])


def test_paper_run1_keeps_restval_an_option(release, tmp_path):
    args = _shrunk("paper_run1", release.root, tmp_path / "run", "data.caption_train_splits=[train, restval]")
    prepared = prepare_data(args)
    assert len(prepared.train["retrieval"]) == COCO["train"] + COCO["restval"]
    assert _image_ids(prepared.train["retrieval"]) == set(
        release.karpathy_coco("train") + release.karpathy_coco("restval")
    )
    again = _shrunk("paper_run1", release.root, tmp_path / "run", "data.caption_train_splits=[train+restval]")
    assert len(prepare_data(again).train["retrieval"]) == COCO["train"] + COCO["restval"]


def test_paper_run2_refuses_a_contaminated_evaluation(release, tmp_path):
    """Run 2 trains VQA on val2014, where the Karpathy COCO test images are: evaluating retrieval there is refused,
    grounding on Flickr30k Entities test is clean."""
    contaminated = _shrunk("paper_run2", release.root, tmp_path / "a", "curriculum.2.evaluate=[retrieval]")
    with pytest.raises(ContaminationError, match="retrieval"):
        prepare_data(contaminated)
    clean = _shrunk("paper_run2", release.root, tmp_path / "b", "curriculum.2.evaluate=[grounding]")
    assert len(prepare_data(clean).eval["grounding"]) == FLICKR["test"]


def test_paper_store_keeps_coco_and_flickr30k_ids_apart(release, tmp_path):
    """`COLLIDING_ID` is a COCO image and another Flickr30k image: each task reads the features of its own corpus."""
    args = _shrunk("paper_run1", release.root, tmp_path / "run")
    prepared = prepare_data(args)
    store = prepared.store
    assert store.metadata["source_corpora"] == ["coco"] * 4 + ["flickr30k"] * 2
    for corpus in ("coco", "flickr30k"):
        written = release.records[corpus][COLLIDING_ID]
        stored = store[f"{corpus}/{COLLIDING_ID}"]
        np.testing.assert_allclose(stored["features"], written.features, rtol=1e-3, atol=1e-3)  # float16
        np.testing.assert_allclose(stored["boxes"], written.boxes)
    coco, flickr = (store[f"{corpus}/{COLLIDING_ID}"]["features"] for corpus in ("coco", "flickr30k"))
    assert coco.shape != flickr.shape or not np.allclose(coco, flickr)  # two images
    assert str(COLLIDING_ID) not in store

    for task, corpus in (("vqa", "coco"), ("retrieval", "coco"), ("grounding", "flickr30k")):
        dataset = prepared.train[task]
        ids = np.asarray(dataset.image_ids).astype(str)
        assert all(i.startswith(f"{corpus}/") for i in ids), (task, ids[:3])
        rows = np.flatnonzero(ids == f"{corpus}/{COLLIDING_ID}")
        assert rows.size  # the colliding image is trained on by each task
        assert set(dataset.image_index[rows].tolist()) == {store.index_of(f"{corpus}/{COLLIDING_ID}")}


def test_paper_features_as_one_unnamed_list_collide(release, tmp_path):
    """The form of version 0.1 (one list of sources) cannot hold both corpora: the shared id is refused."""
    args = _shrunk(
        "paper_run1",
        release.root,
        tmp_path / "run",
        "data.features=[bottom_up/trainval, bottom_up/flickr30k]",
        f"data.features_store={tmp_path / 'unnamed.store'}",
    )
    with pytest.raises(RegionFeatureError, match=f"duplicate image id.*{COLLIDING_ID}|{COLLIDING_ID}.*duplicate"):
        prepare_data(args)


def test_contamination_is_checked_within_each_corpus(release, tmp_path):
    """Grounding trains on the Flickr30k image `COLLIDING_ID`; evaluating VQA on the COCO image of that number is
    clean, evaluating grounding on it is not."""
    clean = _shrunk(
        "paper_single_grounding",
        release.root,
        tmp_path / "a",
        "curriculum.0.evaluate=[grounding, vqa]",
        "data.vqa_eval_split=train",
    )
    prepared = prepare_data(clean)
    assert f"coco/{COLLIDING_ID}" in set(np.asarray(prepared.eval["vqa"].image_ids).astype(str))
    contaminated = _shrunk("paper_single_grounding", release.root, tmp_path / "b", "data.entities_eval_split=train")
    with pytest.raises(ContaminationError, match=f"flickr30k/{COLLIDING_ID}"):
        prepare_data(contaminated)


def test_retrieval_trains_on_two_caption_corpora_and_evaluates_one(release, tmp_path):
    captions = "{coco: karpathy/dataset_coco.json, flickr30k: karpathy/dataset_flickr30k.json}"
    args = _shrunk(
        "paper_single_retrieval_coco",
        release.root,
        tmp_path / "run",
        f"data.captions_file={captions}",
        "data.caption_eval_corpus=flickr30k",
        "tasks.retrieval.batch_size=8",
    )
    prepared = prepare_data(args)
    train = prepared.train["retrieval"]
    assert len(train) == COCO["train"] + FLICKR["train"]
    ids = np.asarray(train.image_ids).astype(str)
    assert {i.split("/")[0] for i in ids} == {"coco", "flickr30k"}
    assert _image_ids(_Only(ids, "coco")) == set(release.karpathy_coco("train"))
    assert _image_ids(_Only(ids, "flickr30k"), "flickr30k") == set(release.flickr30k["train"])
    assert len(set(train.images.tolist())) == len(release.karpathy_coco("train")) + len(release.flickr30k["train"])
    evaluated = prepared.eval["retrieval"]
    assert len(evaluated) == FLICKR["val"] and prepared.caption_corpus == "flickr30k"
    assert all(i.startswith("flickr30k/") for i in np.asarray(evaluated.image_ids).astype(str))

    batches: list[set[str]] = []
    collate = prepared.collators["retrieval"]

    def recording(items):
        batches.append({i.split("/")[0] for i in ids[np.asarray(items, dtype=np.int64)]})
        return collate(items)

    prepared.collators["retrieval"] = recording
    result = train_from_arguments(args, prepared)
    assert result.updates == 3 and len(batches) >= 3
    assert any(corpora == {"coco", "flickr30k"} for corpora in batches)  # one batch mixes the two corpora
    retrieval_metrics = {key for evaluation in result.evaluations for key in evaluation if key.startswith("retrieval/")}
    assert retrieval_metrics  # evaluated on the Flickr30k val captions


class _Only:
    """The image ids of one corpus, as `_image_ids` reads them from a dataset."""

    def __init__(self, ids, corpus):
        self.image_ids = np.asarray([i for i in ids if i.startswith(f"{corpus}/")])


def test_caption_corpora_as_a_list_and_with_unnamed_features(release, tmp_path):
    files = "[karpathy/dataset_flickr30k.json, karpathy/dataset_coco.json]"  # each named by the corpus it holds
    args = _shrunk("paper_single_retrieval_coco", release.root, tmp_path / "a", f"data.captions_file={files}")
    prepared = prepare_data(args)
    assert len(prepared.train["retrieval"]) == COCO["train"] + FLICKR["train"]
    assert len(prepared.eval["retrieval"]) == FLICKR["val"] and prepared.caption_corpus == "flickr30k"  # the first

    unnamed = _shrunk(
        "paper_single_retrieval_coco",
        release.root,
        tmp_path / "b",
        f"data.captions_file={files}",
        "data.features=[bottom_up/trainval]",
        f"data.features_store={tmp_path / 'coco.store'}",
    )
    with pytest.raises(ValueError, match=f"image id {COLLIDING_ID} is in both the flickr30k and the coco"):
        prepare_data(unnamed)
    with pytest.raises(ValueError, match="caption_eval_corpus 'mscoco' is none of"):
        _shrunk(
            "paper_single_retrieval_coco",
            release.root,
            tmp_path / "c",
            "data.captions_file={coco: karpathy/dataset_coco.json}",
            "data.caption_eval_corpus=mscoco",
        )
