"""``hvl evaluate`` under ``accelerate launch`` with two CPU processes ranks exactly like one process.

One command covers both modes: ``--shortlist 2 --first-stage first-layer --shortlist-check`` scores the two-stage
matrix (its first stage shared among the processes too) and the exact one, each into its own cache directory.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from accelerate_launch import run_launched

from hierarchical_vl.evaluation.distributed_scoring import BlockShare, current_share, sum_shares

# Blocks of 2 images x 5 captions: the test split's 5 x 25 grid has 3 x 5 blocks, an odd number.
BLOCKS = ("--block-images", "2", "--block-captions", "5")


def _evaluate(processes: int, demo, output, cache) -> str:
    result = run_launched(
        processes,
        "-m",
        "hierarchical_vl.cli",
        "evaluate",
        str(demo["multitask"]),
        "--data-dir",
        str(demo["corpus"]),
        "--task",
        "all",
        "--split",
        "test",
        "--no-progress",
        "--no-priors",
        "--shortlist",
        "2",
        "--first-stage",
        "first-layer",
        "--shortlist-check",
        "--cache-dir",
        str(cache),
        "--output",
        str(output),
        *BLOCKS,
    )
    return result.stdout


def _blocks(cache) -> dict[str, np.ndarray]:
    """Every cached block, by ``<matrix>/<block file>``."""
    return {
        f"{path.parent.name}/{path.name}": np.load(path, allow_pickle=False)
        for path in sorted(cache.glob("*/block_*.npy"))
    }


def _matrix(cache, name: str, shape: tuple[int, int]) -> np.ndarray:
    """The sorted-order score matrix assembled from a cache directory's blocks (rows and columns in block order)."""
    files = sorted((cache / name).glob("block_*.npy"))
    rows = max(int(path.stem.split("_")[1]) for path in files) + 1
    grid = [
        [np.load(cache / name / f"block_{a:05d}_{b:05d}.npy") for b in range(len(files) // rows)] for a in range(rows)
    ]
    matrix = np.block(grid)
    assert matrix.shape == shape
    return matrix


def test_block_share_deals_round_robin_and_sums_one_process():
    shares = [BlockShare(rank, 3) for rank in range(3)]
    items = list(range(10))
    dealt = [share.deal(items) for share in shares]
    assert dealt == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    assert sorted(sum(dealt, [])) == items
    assert [shares[1].owns(j) for j in range(4)] == [False, True, False, False]
    assert current_share() == BlockShare(0, 1) and not current_share().distributed  # sharing is asked for
    with pytest.raises(ValueError, match="initialised torch.distributed process group"):
        current_share(True)  # no process group in this process
    matrix = np.array([[1.0, -np.inf]], dtype=np.float32)
    assert sum_shares(matrix, current_share()) is matrix


@pytest.mark.slow
def test_two_processes_rank_like_one_and_resume_a_rank_share(demo, tmp_path):
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    printed_one = _evaluate(1, demo, one, tmp_path / "cache1")
    printed_two = _evaluate(2, demo, two, tmp_path / "cache2")
    # The main process alone prints and writes; it evaluates VQA and grounding after the shared ranking.
    for heading in ("Image-caption retrieval (test", "Phrase grounding (test"):
        assert printed_two.count(heading) == 1 == printed_one.count(heading), heading
    single, double = json.loads(one.read_text()), json.loads(two.read_text())
    assert single["metrics"] == double["metrics"]  # two-stage and exact recall figures, agreement, other tasks
    assert {"grounding/r1", "vqa/num_questions"} <= set(single["metrics"])
    assert sorted(path.name for path in tmp_path.glob("*predictions.json")) == [
        "one_vqa_test_predictions.json",
        "two_vqa_test_predictions.json",
    ]
    assert (tmp_path / "one_vqa_test_predictions.json").read_text() == (
        tmp_path / "two_vqa_test_predictions.json"
    ).read_text()
    assert {"retrieval/i2t_r1", "retrieval/exact/i2t_r1", "retrieval/shortlist/i2t_top1"} <= set(single["metrics"])
    stats_one, stats_two = single["info"]["retrieval_last_matrix"], double["info"]["retrieval_last_matrix"]
    assert stats_one["num_processes"] == 1 and stats_two["num_processes"] == 2
    for key in ("pairs_scored", "blocks_total", "blocks_computed"):
        assert stats_one[key] == stats_two[key], key
    n_images, n_captions = (
        int(single["metrics"]["retrieval/num_images"]),
        int(single["metrics"]["retrieval/num_captions"]),
    )
    assert stats_one["blocks_total"] == -(-n_images // 2) * -(-n_captions // 5) > 4

    # Same score blocks, exact and two-stage (-inf where a pair was left out), whichever process computed them.
    blocks_one, blocks_two = _blocks(tmp_path / "cache1"), _blocks(tmp_path / "cache2")
    assert blocks_one.keys() == blocks_two.keys() and len(blocks_one) == 2 * stats_one["blocks_total"]
    for name, block in blocks_one.items():
        np.testing.assert_allclose(blocks_two[name], block, rtol=0, atol=1e-6, err_msg=name)
    exact = _matrix(tmp_path / "cache1", "full", (n_images, n_captions))
    two_stage = _matrix(tmp_path / "cache2", "full_first-layer2", (n_images, n_captions))
    scored = np.isfinite(two_stage)
    assert np.isfinite(exact).all() and 0 < scored.mean() < 1
    np.testing.assert_allclose(two_stage[scored], exact[scored], rtol=0, atol=1e-5)  # re-ranked pairs are exact

    # Resume the one-process cache with two processes, its blocks of rank 1 (odd places of the grid) missing.
    resumed = tmp_path / "resumed"
    shutil.copytree(tmp_path / "cache1", resumed)
    columns = -(-n_captions // 5)
    removed = 0
    for path in sorted(resumed.glob("*/block_*.npy")):
        a, b = (int(part) for part in path.stem.split("_")[1:])
        if (a * columns + b) % 2:
            path.unlink()
            removed += 1
    output = tmp_path / "resumed.json"
    _evaluate(2, demo, output, resumed)
    result = json.loads(output.read_text())
    assert result["metrics"] == single["metrics"]
    stats = result["info"]["retrieval_last_matrix"]  # the exact matrix: half its blocks read back
    assert stats["blocks_computed"] == removed // 2 and stats["blocks_loaded"] == stats["blocks_total"] - removed // 2
    for name, block in _blocks(resumed).items():
        np.testing.assert_allclose(block, blocks_one[name], rtol=0, atol=1e-6, err_msg=name)


def _tiny_inputs():
    import torch

    from hierarchical_vl import HierarchicalVLConfig, HierarchicalVLForImageTextRetrieval

    torch.manual_seed(0)
    config = HierarchicalVLConfig.from_preset("tiny")
    model = HierarchicalVLForImageTextRetrieval(config).eval()
    lengths = torch.randint(2, 7, (23,))
    mask = (torch.arange(6) < lengths[:, None]).long()
    text = {"input_ids": torch.randint(2, config.vocab_size, (23, 6)) * mask, "attention_mask": mask}
    regions = torch.randint(2, 6, (9,))
    images = {
        "region_features": torch.randn(9, 5, config.region_feature_dim).relu(),
        "region_mask": (torch.arange(5) < regions[:, None]).long(),
    }
    return model, text, images


def _score_all(scorer, text, images, cache):
    """The matrices one process or every process of a group computes: exact, both first stages, two-stage."""
    cheap = np.arange(9 * 23, dtype=np.float32).reshape(9, 23) % 7
    exact = scorer.score_matrix(text, images, cache_dir=cache / "exact", progress=False)
    stats = scorer.last_stats
    return {
        "exact": exact,
        "exact_stats": np.array([stats.blocks_loaded, stats.blocks_computed, stats.pairs_scored]),
        "first_layer": scorer.first_stage_scores(text, images, "first-layer"),
        "dual_encoder": scorer.first_stage_scores(text, images, "dual-encoder"),
        "shortlist": scorer.score_matrix(
            text, images, cache_dir=cache / "short", progress=False, shortlist=3, first_stage="first-layer"
        ),
        "given": scorer.score_matrix(text, images, progress=False, shortlist=2, shortlist_scores=cheap),
        "stats": np.array([scorer.last_stats.blocks_computed, scorer.last_stats.num_processes]),
    }


def _worker(rank: int, world_size: int, init_file: str, cache: str, output: str) -> None:
    import pathlib

    import torch

    from hierarchical_vl.evaluation import RetrievalScorer

    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        model, text, images = _tiny_inputs()
        scorer = RetrievalScorer(model, batch_size=7, images_per_block=2, captions_per_block=5, distributed=True)
        results = _score_all(scorer, text, images, pathlib.Path(cache))
        np.savez(f"{output}_{rank}.npz", **results)
    finally:
        torch.distributed.destroy_process_group()


def test_scorer_shares_blocks_in_a_process_group(tmp_path):
    """Two forked processes in a gloo group: every matrix equals the one-process matrix on both processes, and a
    cache half written by one process is completed by the group."""
    import multiprocessing

    from hierarchical_vl.evaluation import RetrievalScorer

    model, text, images = _tiny_inputs()
    scorer = RetrievalScorer(model, batch_size=7, images_per_block=2, captions_per_block=5)
    single = _score_all(scorer, text, images, tmp_path / "single")
    assert single["exact_stats"].tolist() == [0, 25, 9 * 23]
    # Keep the blocks of even places only: the group reads those back and computes the rest.
    missing_pairs = 0
    for path in sorted((tmp_path / "single").glob("*/block_*.npy")):
        a, b = (int(part) for part in path.stem.split("_")[1:])
        if (a * 5 + b) % 2:
            missing_pairs += np.load(path).size if path.parent.name == "exact" else 0
            path.unlink()
    context = multiprocessing.get_context("fork")
    workers = [
        context.Process(
            target=_worker, args=(rank, 2, str(tmp_path / "init"), str(tmp_path / "single"), str(tmp_path / "out"))
        )
        for rank in range(2)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [worker.exitcode for worker in workers] == [0, 0]
    for rank in range(2):
        shared = np.load(tmp_path / f"out_{rank}.npz")
        for name in ("exact", "first_layer", "dual_encoder", "shortlist", "given"):
            np.testing.assert_array_equal(shared[name], single[name], err_msg=f"{name} on rank {rank}")
        assert shared["stats"].tolist() == [5 * 5, 2]  # the given-shortlist matrix: no cache, 25 blocks, 2 processes
        # 13 of the 25 exact blocks read back, 12 computed (totals over the group): only the missing pairs scored.
        assert shared["exact_stats"].tolist() == [13, 12, missing_pairs]
