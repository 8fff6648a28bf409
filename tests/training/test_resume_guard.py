"""A run resumes only with the configuration it was started with."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from hierarchical_vl.training.arguments import load_training_arguments
from hierarchical_vl.training.trainer import MultiTaskTrainer


def _guard(args, output_dir):
    stub = SimpleNamespace(args=args, output_dir=output_dir, accelerator=SimpleNamespace(
        is_main_process=True, wait_for_everyone=lambda: None))  # fmt: skip
    MultiTaskTrainer._check_output_dir(stub)


def test_a_changed_configuration_is_refused_and_the_saved_one_kept(tmp_path):
    old = load_training_arguments("demo", [f"output_dir={tmp_path}"])
    old.save(tmp_path / "training_args.yaml")
    saved = (tmp_path / "training_args.yaml").read_text()
    same = load_training_arguments("demo", [f"output_dir={tmp_path}", "progress=false", "log_every=3"])
    _guard(same, tmp_path)  # only fields that do not change the run: resumes
    changed = load_training_arguments("demo", [f"output_dir={tmp_path}", "seed=7"])
    with pytest.raises(ValueError, match=r"seed: 0 -> 7.*--overwrite-output"):
        _guard(changed, tmp_path)
    assert (tmp_path / "training_args.yaml").read_text() == saved


def test_overwrite_output_starts_afresh(tmp_path):
    load_training_arguments("demo").save(tmp_path / "training_args.yaml")
    (tmp_path / "checkpoints" / "step-00000001").mkdir(parents=True)
    changed = load_training_arguments("demo", ["seed=7", "overwrite_output_dir=true"])
    _guard(changed, tmp_path)
    assert not (tmp_path / "checkpoints").exists()


def _saved_before_the_protocol_field(tmp_path, splits):
    """A ``training_args.yaml`` as written before the ``protocol`` field (Karpathy ``train`` then held restval)."""
    import yaml

    args = load_training_arguments("demo", [f"data.caption_train_splits={splits}"])
    saved = yaml.safe_load(yaml.safe_dump(args._saved_form(), sort_keys=False))
    saved.pop("protocol")
    for name in ("eval_max_images", "answer_pool_splits", "answer_normalization", "retrieval_negative_mining"):
        saved["data"].pop(name)
    path = tmp_path / "training_args.yaml"
    path.write_text(yaml.safe_dump(saved, sort_keys=False))
    return path


def test_an_old_run_on_karpathy_train_resumes_only_with_the_images_it_had(tmp_path):
    saved = _saved_before_the_protocol_field(tmp_path, "[train]")
    # Then, 'train' meant train + restval: the same images today are [train, restval] or [train+restval].
    for same in ("[train, restval]", "[train+restval]"):
        args = load_training_arguments("demo", [f"data.caption_train_splits={same}"])
        assert args.run_differences(saved) == []
    differences = load_training_arguments("demo", ["data.caption_train_splits=[train]"]).run_differences(saved)
    assert len(differences) == 1 and "included the restval images" in differences[0]
    assert "data.caption_train_splits=[train, restval]" in differences[0]


def test_a_new_run_compares_the_split_names_as_they_are(tmp_path):
    args = load_training_arguments("demo", ["data.caption_train_splits=[train]"])
    args.save(tmp_path / "training_args.yaml")
    assert args.run_differences(tmp_path / "training_args.yaml") == []
    other = load_training_arguments("demo", ["data.caption_train_splits=[train, restval]"])
    assert other.run_differences(tmp_path / "training_args.yaml") == [
        "data.caption_train_splits: ['train'] -> ['train', 'restval']"
    ]


def test_prefetching_and_device_features_may_change_on_resumption_but_grouping_may_not(tmp_path):
    old = load_training_arguments("demo", [f"output_dir={tmp_path}"])
    old.save(tmp_path / "training_args.yaml")
    same = load_training_arguments("demo", ["prefetch_batches=0", "data.features_on_device=true"])
    assert same.run_differences(tmp_path / "training_args.yaml") == []  # same batches, same results
    grouped = load_training_arguments("demo", ["data.group_by_length=true"])
    assert grouped.run_differences(tmp_path / "training_args.yaml") == ["data.group_by_length: False -> True"]
    # A file saved before the fields existed reads as the defaults.
    text = (tmp_path / "training_args.yaml").read_text()
    lines = [line for line in text.splitlines() if "group_by_length" not in line and "features_on_device" not in line]
    (tmp_path / "training_args.yaml").write_text("\n".join(lines) + "\n")
    assert "group_by_length" not in (tmp_path / "training_args.yaml").read_text()
    assert old.run_differences(tmp_path / "training_args.yaml") == []
    assert grouped.run_differences(tmp_path / "training_args.yaml") == ["data.group_by_length: '<absent>' -> True"]


@pytest.mark.parametrize("value", [-1, 1.5, True])
def test_prefetch_batches_must_be_a_count(value):
    with pytest.raises(ValueError, match="prefetch_batches must be an integer >= 0"):
        load_training_arguments("demo", [f"prefetch_batches={value}"])
