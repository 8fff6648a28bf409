"""Collated VQA batches per second: the fast store path against per-example reads through ``datasets``.

Both paths serve the same examples (questions with their pre-tokenised ids and soft labels, 36 x 2048 float16
regions per image) in the same random order, and produce the same batch (``input_ids``, ``attention_mask``,
``region_features``, ``region_mask``, ``region_boxes``, ``labels``):

* fast: ``EncodedVQADataset`` + ``VQACollator`` over a ``RegionFeatureStore`` -- index batches, one fancy-index
  gather of the float16 memory map per batch -- through a ``torch.utils.data.DataLoader``;
* reference: a ``datasets.Dataset`` of questions and one of region features (``Array2D`` float16), read one example
  at a time (``questions[i]``, then ``regions[row]``, numpy format), padded and stacked per batch.

The store and the Arrow files are on local disk and warm in the page cache (as after the first epoch).

    python benchmarks/bench_data.py                     # 6000 images, 30000 questions, batch 256
    python benchmarks/bench_data.py --workers 0 2 --reference-examples 4096
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from hierarchical_vl import HierarchicalVLTokenizer
from hierarchical_vl.data import EncodedVQADataset, RegionFeatureStore, RegionFeatureStoreWriter, VQACollator

COLORS = ("red", "green", "blue", "yellow", "purple", "gray", "white", "black", "brown", "orange")
OBJECTS = ("cube", "sphere", "cylinder", "cone", "dog", "cat", "car", "bus", "man", "woman", "tree", "table")
TEMPLATES = (
    "what color is the {o}?",
    "how many {o}s are there?",
    "is there a {c} {o} in the picture?",
    "what is the {c} thing next to the {o}?",
    "is the {o} on the left of the {c} {o}?",
)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _memory_gib() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        return float("nan")


def build_corpus(workdir: Path, num_images: int, questions_per_image: int, regions: int, dim: int, seed: int):
    """Writes the store and returns (store, question rows, answer vocabulary)."""
    rng = np.random.default_rng(seed)
    with RegionFeatureStoreWriter(workdir / "store", feature_dim=dim, overwrite=True) as writer:
        for image_id in range(num_images):
            xs = np.sort(rng.uniform(0, 640, (regions, 2)), axis=1)
            ys = np.sort(rng.uniform(0, 480, (regions, 2)), axis=1)
            boxes = np.stack([xs[:, 0], ys[:, 0], xs[:, 1], ys[:, 1]], axis=1)  # (K, 4) x1 y1 x2 y2
            writer.add(image_id, boxes, rng.random((regions, dim), dtype=np.float32) * 4, 640, 480)
    vocab = [str(i) for i in range(3129)]
    rows = []
    for image_id in range(num_images):
        for k in range(questions_per_image):
            template = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
            question = template.format(
                o=OBJECTS[int(rng.integers(len(OBJECTS)))], c=COLORS[int(rng.integers(len(COLORS)))]
            )
            labels = sorted(set(rng.integers(0, len(vocab), int(rng.integers(1, 4))).tolist()))
            scores = [float(np.float32(s)) for s in rng.choice([0.3, 0.6, 0.9, 1.0], len(labels))]
            answers = [{"answer": vocab[labels[0]], "answer_confidence": "yes", "answer_id": j + 1} for j in range(10)]
            rows.append(
                {
                    "question_id": image_id * 1000 + k,
                    "image_id": image_id,
                    "question": question,
                    "question_type": "what",
                    "answer_type": "other",
                    "multiple_choice_answer": vocab[labels[0]],
                    "answers": answers,
                    "labels": labels,
                    "scores": scores,
                }
            )
    return RegionFeatureStore(workdir / "store"), rows, vocab


def time_fast(encoded: EncodedVQADataset, batch_size: int, workers: int, seconds: float, seed: int) -> dict:
    collator = VQACollator(encoded, max_regions=100)
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(
        encoded,
        batch_size=batch_size,
        shuffle=True,
        collate_fn=collator,
        num_workers=workers,
        generator=generator,
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers else None,
    )
    # Warm-up pass (workers start, pages fault in), then timed passes until `seconds` have elapsed.
    for i, _ in enumerate(loader):
        if i == 10:
            break
    shape = tuple(next(iter(loader))["region_features"].shape)
    examples, batches, rates = 0, 0, []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        epoch_start, epoch_examples = time.perf_counter(), 0
        for batch in loader:
            epoch_examples += batch["input_ids"].shape[0]
            batches += 1
        rates.append(epoch_examples / (time.perf_counter() - epoch_start))
        examples += epoch_examples
    elapsed = time.perf_counter() - start
    return {
        "examples_per_s": examples / elapsed,
        "batches_per_s": batches / elapsed,
        "epochs": len(rates),
        "epoch_rates": rates,
        "shape": shape,
    }


def time_reference(question_rows, region_rows, order: np.ndarray, batch_size: int, num_answers: int) -> dict:
    """Per-example reads through ``datasets`` in the same random order, collated into the same batch."""
    examples = 0
    start = time.perf_counter()
    for first in range(0, len(order), batch_size):
        items = []
        for i in order[first : first + batch_size]:
            question = question_rows[int(i)]
            regions = region_rows[int(question["image_row"])]
            items.append((question, regions))
        lengths = [len(q["input_ids"]) for q, _ in items]
        width = max(lengths)
        input_ids = torch.zeros(len(items), width, dtype=torch.long)
        labels = torch.zeros(len(items), num_answers)
        for row, (q, _) in enumerate(items):
            input_ids[row, : lengths[row]] = torch.as_tensor(q["input_ids"])
            labels[row, torch.as_tensor(q["labels"], dtype=torch.long)] = torch.as_tensor(q["scores"])
        batch = {
            "input_ids": input_ids,
            "attention_mask": (torch.arange(width)[None] < torch.tensor(lengths)[:, None]).long(),
            "region_features": torch.from_numpy(np.stack([r["features"] for _, r in items])),
            "region_mask": torch.ones(len(items), items[0][1]["features"].shape[0], dtype=torch.long),
            "region_boxes": torch.from_numpy(
                np.stack([r["boxes"] / np.float32([640, 480, 640, 480]) for _, r in items])
            ),
            "labels": labels,
        }
        examples += batch["input_ids"].shape[0]
    elapsed = time.perf_counter() - start
    return {"examples_per_s": examples / elapsed, "examples": examples, "seconds": elapsed}


def question_dataset(rows: list[dict], vocab: list[str]):
    """The questions of `build_corpus` as a map-style ``datasets.Dataset`` with the VQA loader's features."""
    import datasets

    features = datasets.Features(
        {
            "question_id": datasets.Value("int64"),
            "image_id": datasets.Value("int64"),
            "question": datasets.Value("string"),
            "question_type": datasets.Value("string"),
            "answer_type": datasets.Value("string"),
            "multiple_choice_answer": datasets.Value("string"),
            "answers": datasets.List(
                {
                    "answer": datasets.Value("string"),
                    "answer_confidence": datasets.Value("string"),
                    "answer_id": datasets.Value("int32"),
                }
            ),
            "labels": datasets.List(datasets.ClassLabel(names=vocab)),
            "scores": datasets.List(datasets.Value("float32")),
        }
    )
    return datasets.Dataset.from_list(rows, features=features)


def build_reference(
    questions, encoded: EncodedVQADataset, store: RegionFeatureStore, workdir: Path, regions: int, dim: int
):
    """The per-example reference's two ``datasets.Dataset`` s: the questions with their token ids and image rows,
    and the region features (``Array2D`` float16, numpy format), written as Arrow files under ``workdir``."""
    import datasets

    reference_questions = questions.add_column(
        "input_ids", [encoded.token_ids[i, : encoded.lengths[i]].tolist() for i in range(len(encoded))]
    )
    reference_questions = reference_questions.add_column("image_row", encoded.image_index.tolist())
    region_features = datasets.Features(
        {
            "image_id": datasets.Value("int64"),
            "features": datasets.Array2D((regions, dim), "float16"),
            "boxes": datasets.Array2D((regions, 4), "float32"),
        }
    )
    region_rows = datasets.Dataset.from_generator(
        _region_generator,
        features=region_features,
        gen_kwargs={"path": str(store.path)},
        cache_dir=str(workdir / "hf_cache"),
    ).with_format("numpy")
    return reference_questions, region_rows


def _region_generator(path: str):
    source = RegionFeatureStore(path)
    for index in range(len(source)):
        item = source[source.image_ids[index]]
        yield {"image_id": index, "features": np.asarray(item["features"]), "boxes": item["boxes"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=6000)
    parser.add_argument("--questions-per-image", type=int, default=5)
    parser.add_argument("--regions", type=int, default=36)
    parser.add_argument("--feature-dim", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--seconds", type=float, default=8.0, help="minimum timed seconds per fast configuration")
    parser.add_argument("--reference-examples", type=int, default=4096)
    parser.add_argument("--workdir", type=Path, default=None, help="where to write the store and Arrow files")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import datasets

    datasets.disable_progress_bars()
    torch.set_num_threads(1)
    workdir_context = tempfile.TemporaryDirectory(dir=args.workdir)
    workdir = Path(workdir_context.name)
    print(
        f"machine: {_cpu_name()}, {os.cpu_count()} cores, {_memory_gib():.0f} GiB; "
        f"torch {torch.__version__}, datasets {datasets.__version__}, numpy {np.__version__}; "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    t0 = time.perf_counter()
    store, rows, vocab = build_corpus(
        workdir, args.images, args.questions_per_image, args.regions, args.feature_dim, args.seed
    )
    print(
        f"store: {store} ({store.features.nbytes / 2**30:.2f} GiB float16), {len(rows)} questions, "
        f"built in {time.perf_counter() - t0:.1f}s"
    )

    questions = question_dataset(rows, vocab)
    tokenizer = HierarchicalVLTokenizer.from_texts(questions["question"])

    t0 = time.perf_counter()
    encoded = EncodedVQADataset(questions, store, tokenizer, max_words=14)
    encode_seconds = time.perf_counter() - t0
    print(f"encoding {len(encoded)} questions once (tokenise, labels, image rows): {encode_seconds:.2f}s")

    results = {}
    for workers in args.workers:
        results[workers] = time_fast(encoded, args.batch_size, workers, args.seconds, args.seed)
        r = results[workers]
        print(
            f"fast store, num_workers={workers}: {r['examples_per_s']:,.0f} examples/s "
            f"({r['batches_per_s']:.1f} batches/s of {r['shape']}; epochs: "
            f"{', '.join(f'{x:,.0f}' for x in r['epoch_rates'])})"
        )

    # Reference: the same examples through `datasets`, one at a time (pre-tokenised ids stored in the dataset).
    t0 = time.perf_counter()
    reference_questions, regions = build_reference(questions, encoded, store, workdir, args.regions, args.feature_dim)
    print(f"reference Arrow files written in {time.perf_counter() - t0:.1f}s")
    order = np.random.default_rng(args.seed).permutation(len(encoded))[: args.reference_examples]
    time_reference(reference_questions, regions, order[: args.batch_size], args.batch_size, len(vocab))  # warm-up
    reference = time_reference(reference_questions, regions, order, args.batch_size, len(vocab))
    print(
        f"datasets per-example reference: {reference['examples_per_s']:,.0f} examples/s "
        f"({reference['examples']} examples in {reference['seconds']:.1f}s)"
    )
    for workers, r in results.items():
        print(
            f"ratio fast (num_workers={workers}) / reference: {r['examples_per_s'] / reference['examples_per_s']:.1f}x"
        )
    best = max(results.values(), key=lambda r: r["examples_per_s"])["examples_per_s"]
    print(f"best: {best:,.0f} examples/s (target 20,000); load average now {os.getloadavg()[0]:.2f}")
    workdir_context.cleanup()


if __name__ == "__main__":
    main()
