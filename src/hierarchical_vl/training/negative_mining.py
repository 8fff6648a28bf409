"""Hard negatives for image-caption retrieval, mined from the batch by the model's current scores.

The paper trains retrieval with BCE over matching and non-matching pairs and does not say how the non-matching ones
are chosen. The default (``data.retrieval_negative_mining: random``) takes k in-batch negatives per positive by
random shifts in `RetrievalCollator`. With ``hard``, the collator emits the B positives and this step, which has
the model, scores every in-batch (image, caption) pair without gradient (the retrieval head's own pair scoring,
`score_pairs`, in eval mode) and keeps for each positive the k negatives with the highest logits in each direction:
the other captions scored against its image and the other images scored against its caption. The loss is then the
model's ordinary forward pass, with gradient, on the positives and those negatives.

Pairs that are not negatives are never chosen: a caption of the same image (a batch may hold several captions of
one image) is excluded, and an image present in several rows counts once. A batch with fewer than k candidates for
a positive gives it as many as there are. Mining costs a no-gradient pass over U x B pairs (U distinct images,
B captions) per update, against (1 + 2k) B pairs with gradient for the loss.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["hard_negative_pairs", "mine_hard_negatives"]


def hard_negative_pairs(
    scores: torch.Tensor, caption_image: torch.Tensor, negatives_per_positive: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The hardest in-batch negatives of each positive, from the scores of every (image, caption) pair.

    Args:
        scores: `(U, B)` logits of (distinct image u, caption j).
        caption_image: `(B,)` the distinct image (0..U-1) of each caption; positive i is (``caption_image[i]``, i).
        negatives_per_positive: k, negatives per positive in each direction.

    Returns:
        ``(caption_rows (P,), image_rows (P,), other_image (P,) bool)``: the negative pairs, first the other captions
        of each positive's image (rank 0 of every positive, then rank 1, ...), then the other images of each
        positive's caption in the same order; ``other_image`` is True for the second kind. Rows are captions
        (0..B-1) and distinct images (0..U-1).
    """
    num_images, num_captions = scores.shape
    if caption_image.shape != (num_captions,):
        raise ValueError(f"caption_image must have shape ({num_captions},), got {tuple(caption_image.shape)}")
    if negatives_per_positive < 0:
        raise ValueError(f"negatives_per_positive must be >= 0, got {negatives_per_positive}")
    caption_image = caption_image.to(scores.device)
    negative = caption_image[None, :] != torch.arange(num_images, device=scores.device)[:, None]  # (U, B)
    masked = scores.float().masked_fill(~negative, float("-inf"))  # (U, B)
    positions = torch.arange(num_captions, device=scores.device)  # (B,)

    # Other captions of each positive's image: the top k of row caption_image[i].
    k = min(negatives_per_positive, num_captions)
    captions = masked[caption_image].topk(k, dim=1).indices.T  # (k, B) caption rows
    caption_valid = negative[caption_image[None, :].expand(k, -1), captions]  # (k, B)
    # Other images of each positive's caption: the top k of column i.
    k = min(negatives_per_positive, num_images)
    images = masked.topk(k, dim=0).indices  # (k, B) image rows
    image_valid = negative[images, positions[None, :].expand(k, -1)]  # (k, B)

    caption_rows = torch.cat([captions[caption_valid], positions.expand_as(images)[image_valid]])
    image_rows = torch.cat([caption_image.expand_as(captions)[caption_valid], images[image_valid]])
    other_image = torch.cat(
        [caption_valid.new_zeros(int(caption_valid.sum())), image_valid.new_ones(int(image_valid.sum()))]
    )
    return caption_rows, image_rows, other_image


def mine_hard_negatives(model: Any, batch: dict[str, Any], negatives_per_positive: int) -> dict[str, Any]:
    """A training batch of the positives and their hardest in-batch negatives by ``model``'s current scores.

    Args:
        model: A model with the retrieval head's pair scoring (`HierarchicalVLForImageTextRetrieval`,
            `HierarchicalVLForMultiTask`); it scores in eval mode and is returned to its previous mode.
        batch: A `RetrievalCollator` batch built with ``negative_mining="hard"``: B positives and
            ``image_positions`` (B,).
        negatives_per_positive: k, negatives per positive in each direction.

    Returns:
        The model inputs of the B positives followed by the negative pairs (see `hard_negative_pairs`), with
        ``labels`` 1 for the positives and 0 for the negatives; no ``metadata`` and no ``image_positions``.
    """
    if "image_positions" not in batch:
        raise ValueError(
            "hard negative mining needs a retrieval batch with 'image_positions': build the RetrievalCollator with "
            "negative_mining='hard'"
        )
    batch = {key: value for key, value in batch.items() if key != "metadata"}
    positions = batch.pop("image_positions")  # (B,)
    distinct, caption_image = torch.unique(positions, return_inverse=True)  # (U,), (B,)
    # The first row of each distinct image carries its regions.
    rows = torch.arange(len(positions), device=positions.device)
    first_row = torch.full_like(distinct, len(positions)).scatter_reduce(0, caption_image, rows, reduce="amin")
    first_row = first_row.to(batch["region_features"].device)
    text_inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    image_inputs = {
        name: batch[name].index_select(0, first_row)
        for name in ("region_features", "region_mask", "region_boxes")
        if name in batch
    }
    caption_image = caption_image.to(batch["input_ids"].device)
    num_images, num_captions = len(distinct), len(positions)
    text_index = torch.arange(num_captions, device=caption_image.device).repeat(num_images)  # (U * B,)
    image_index = torch.arange(num_images, device=caption_image.device).repeat_interleave(num_captions)
    was_training = model.training
    model.eval()
    try:
        scores = model.score_pairs(text_inputs, image_inputs, text_index, image_index)  # (U * B,)
    finally:
        model.train(was_training)
    caption_rows, image_rows, _ = hard_negative_pairs(
        scores.view(num_images, num_captions), caption_image, negatives_per_positive
    )
    positives = torch.arange(num_captions, device=caption_image.device)
    text_rows = torch.cat([positives, caption_rows])  # (B + P,)
    region_rows = torch.cat([first_row[caption_image], first_row[image_rows]])  # rows of the batch
    mined = {
        name: value.index_select(0, text_rows.to(value.device))
        for name, value in batch.items()
        if name in ("input_ids", "attention_mask")
    }
    for name in ("region_features", "region_mask", "region_boxes"):
        if name in batch:
            mined[name] = batch[name].index_select(0, region_rows.to(batch[name].device))
    labels = batch["labels"]
    mined["labels"] = torch.cat([labels.new_ones(num_captions), labels.new_zeros(len(caption_rows))])
    return mined
