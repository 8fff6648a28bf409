"""Word-level tokenizer of the hierarchical vision-language model, and the GloVe loader.

Text is lowercased and split the way NLTK's Treebank tokenisation (used by DCN) splits it: on whitespace, with
punctuation marks as separate tokens, contractions split off (``don't`` -> ``do n't``, ``it's`` -> ``it 's``) and
numbers with inner separators kept whole (``1,000``, ``3.5``). Padding id is 0 and the unknown token id is 1.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

__all__ = ["GloveCoverage", "HierarchicalVLTokenizer", "build_word_tokenizer", "load_glove_embeddings"]

logger = logging.getLogger(__name__)

PAD_TOKEN = "<pad>"
UNK_TOKEN = "<unk>"

# One pre-token: a word before a contraction, the contraction, a number with inner separators, a word, or a mark.
_WORD_PATTERN = r"\w+(?=n't)|n't|'(?:s|re|ve|ll|m|d)(?!\w)|\d+(?:[.,:]\d+)+|\w+|[^\w\s]"


def _backend(vocab: dict[str, int]) -> Tokenizer:
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK_TOKEN))
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex(_WORD_PATTERN), behavior="isolated")]
    )
    return tokenizer


def build_word_tokenizer(texts: Iterable[str], min_frequency: int = 1, max_vocab_size: int | None = None) -> Tokenizer:
    """Build the backend word-level tokenizer from training text.

    Args:
        texts: Training sentences (questions, captions).
        min_frequency: Words seen fewer times become the unknown token.
        max_vocab_size: Keep at most this many entries (the two special tokens included), most frequent first.
    """
    tokenizer = _backend({PAD_TOKEN: 0, UNK_TOKEN: 1})
    trainer = trainers.WordLevelTrainer(
        vocab_size=max_vocab_size or 10**9,
        min_frequency=min_frequency,
        special_tokens=[PAD_TOKEN, UNK_TOKEN],
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


class HierarchicalVLTokenizer(PreTrainedTokenizerFast):
    """Word-level tokenizer (``tokenizers`` WordLevel) with DCN-style lowercasing and punctuation splitting.

    Build one from training text with [`HierarchicalVLTokenizer.from_texts`]; it saves as ``tokenizer.json``.
    No special tokens are added around a sentence.
    """

    vocab_files_names = {"tokenizer_file": "tokenizer.json"}
    model_input_names = ["input_ids", "attention_mask"]
    padding_side = "right"
    truncation_side = "right"

    @classmethod
    def from_texts(
        cls, texts: Iterable[str], min_frequency: int = 1, max_vocab_size: int | None = None, **kwargs
    ) -> HierarchicalVLTokenizer:
        """A tokenizer whose vocabulary is the words of ``texts`` (see [`build_word_tokenizer`])."""
        backend = build_word_tokenizer(texts, min_frequency=min_frequency, max_vocab_size=max_vocab_size)
        kwargs.setdefault("pad_token", PAD_TOKEN)
        kwargs.setdefault("unk_token", UNK_TOKEN)
        return cls(tokenizer_object=backend, **kwargs)

    def words(self, text: str) -> list[str]:
        """The normalised words of ``text`` as the tokenizer sees them (before the vocabulary lookup)."""
        normalized = self.backend_tokenizer.normalizer.normalize_str(text)
        return [word for word, _ in self.backend_tokenizer.pre_tokenizer.pre_tokenize_str(normalized)]

    def unknown_words(self, text: str) -> list[str]:
        """The words of ``text`` that are not in the vocabulary (the model reads each as ``<unk>``).

        Args:
            text: A question, caption or sentence.

        Returns:
            The unknown words as written in ``text``, in order of appearance, each once.
        """
        encoded = self(text, add_special_tokens=False, return_offsets_mapping=True)
        unknown = self.unk_token_id
        words = (
            text[start:end]
            for token, (start, end) in zip(encoded["input_ids"], encoded["offset_mapping"])
            if token == unknown
        )
        return list(dict.fromkeys(words))


@dataclass
class GloveCoverage:
    """How much of a vocabulary a GloVe file covered."""

    vocab_size: int
    found: int
    found_lowercased: int
    missing_examples: list[str]

    @property
    def ratio(self) -> float:
        """Fraction of the non-special vocabulary that received a GloVe vector."""
        return self.found / max(1, self.vocab_size)

    def __str__(self) -> str:
        return (
            f"GloVe covered {self.found}/{self.vocab_size} words ({100 * self.ratio:.2f}%), "
            f"{self.found_lowercased} through a cased variant; missing e.g. {self.missing_examples[:10]}"
        )


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def load_glove_embeddings(
    path: str | os.PathLike,
    vocab: dict[str, int],
    dim: int = 300,
    seed: int = 0,
    init_scale: float = 0.1,
) -> tuple[np.ndarray, GloveCoverage]:
    """Read a GloVe text file (``glove.840B.300d.txt`` format) into an embedding matrix for ``vocab``.

    Each line is a word followed by ``dim`` numbers; the word itself may contain spaces (840B has a few), so the
    numbers are taken from the right. An exact match wins over a cased variant (``Paris`` for ``paris``). Words
    not found get small random vectors (seeded); the padding row (id 0) is zero.

    Args:
        path: The GloVe file.
        vocab: Word -> id (``tokenizer.get_vocab()``).
        dim: Vector width.
        seed: Seed of the vectors of missing words.
        init_scale: Standard deviation of the vectors of missing words.

    Returns:
        ``(matrix (V, dim) float32, coverage)``.
    """
    size = max(vocab.values()) + 1
    rng = np.random.default_rng(seed)
    matrix = (rng.standard_normal((size, dim)) * init_scale).astype(np.float32)
    special = {PAD_TOKEN, UNK_TOKEN}
    exact: set[str] = set()
    cased: set[str] = set()
    with open(path, encoding="utf-8", errors="strict") as handle:
        for line_number, line in enumerate(handle, start=1):
            parts = line.rstrip("\n").rstrip(" ").split(" ")
            if line_number == 1 and len(parts) - 1 != dim and all(_is_number(field) for field in parts[1:]):
                raise ValueError(
                    f"{path}:1: the file's vectors have {len(parts) - 1} numbers, but the word embeddings have {dim} "
                    "(config.word_embedding_dim): use a GloVe file of that width or change the model's"
                )
            if len(parts) < dim + 1:
                raise ValueError(f"{path}:{line_number}: expected a word and {dim} numbers, got {len(parts)} fields")
            word = " ".join(parts[:-dim])
            if word in vocab and word not in special:
                target = word
                exact.add(word)
                cased.discard(word)
            else:
                lowered = word.lower()
                if lowered not in vocab or lowered in exact or lowered in cased or lowered in special:
                    continue
                target = lowered
                cased.add(lowered)
            try:
                matrix[vocab[target]] = np.asarray(parts[-dim:], dtype=np.float32)
            except ValueError as error:
                raise ValueError(f"{path}:{line_number}: the vector of {word!r} is not numeric ({error})") from None
    matrix[0] = 0.0
    words = [word for word in vocab if word not in special]
    missing = [word for word in words if word not in exact and word not in cased]
    coverage = GloveCoverage(
        vocab_size=len(words),
        found=len(exact) + len(cased),
        found_lowercased=len(cased),
        missing_examples=missing[:50],
    )
    logger.info("%s", coverage)
    return matrix, coverage
