"""``evaluate`` module for image-caption retrieval Recall@K (wraps [`hierarchical_vl.metrics.retrieval`])."""

from __future__ import annotations

import datasets
import evaluate
import numpy as np

from hierarchical_vl.metrics.evaluate_modules import metric_module
from hierarchical_vl.metrics.retrieval import coco_1k_5fold, retrieval_recall

__all__ = ["RetrievalRecall"]

_DESCRIPTION = """\
Image-caption retrieval metrics: Recall@K, median and mean rank for image annotation (image -> its ground-truth
captions, rank of the best one) and image retrieval (caption -> its image), and rsum. Ties are broken against the
ground truth. Recalls in percent, all values rounded to 2 decimals.

Input schema: one example per caption. `predictions` is the caption's score against every image of the test set
(the same image order for all captions, so a row of length n_images) and `references` is the index of its
ground-truth image in that order. The stacked predictions are the transposed (n_images, n_captions) score matrix.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `float`): per caption, its scores against all n_images images.
    references (`list` of `int`): per caption, the index of its image in [0, n_images).
    ks (`tuple` of `int`, defaults to `(1, 5, 10)`): the K of Recall@K.
    protocol (`str`, defaults to `"all"`): `"all"` ranks against all images (COCO 5K, Flickr30k 1K);
        `"coco_1k"` averages over `num_folds` folds of `fold_size` consecutive images (COCO 1K: 5 x 1000).
    num_folds (`int`, defaults to 5), fold_size (`int`, defaults to 1000): the folds of `"coco_1k"`.
Returns:
    i2t_r1, i2t_r5, i2t_r10, i2t_medr, i2t_meanr, t2i_r1, t2i_r5, t2i_r10, t2i_medr, t2i_meanr, rsum (`float`).
Examples:
    >>> metric = load_metric("retrieval_recall")
    >>> metric.compute(predictions=[[0.9, 0.1], [0.2, 0.8]], references=[0, 1])["rsum"]
    600.0
"""

_CITATION = """\
@inproceedings{karpathy2015deep,
  title={Deep Visual-Semantic Alignments for Generating Image Descriptions},
  author={Karpathy, Andrej and Fei-Fei, Li},
  booktitle={CVPR},
  year={2015}
}
"""

_FEATURES = datasets.Features(
    {
        "predictions": datasets.Sequence(datasets.Value("float64")),
        "references": datasets.Value("int64"),
    }
)


@metric_module(_DESCRIPTION, _KWARGS_DESCRIPTION, _CITATION, _FEATURES)
class RetrievalRecall(evaluate.Metric):
    """Recall@K, median and mean rank in both retrieval directions."""

    def _compute(self, predictions, references, ks=(1, 5, 10), protocol="all", num_folds=5, fold_size=1000):
        if not predictions:
            raise ValueError("no captions to score")
        lengths = {len(row) for row in predictions}
        if len(lengths) != 1:
            raise ValueError(f"every caption must be scored against the same images; got row lengths {sorted(lengths)}")
        scores = np.asarray(predictions, dtype=np.float64).T  # (n_images, n_captions)
        caption_to_image = np.asarray(references, dtype=np.int64)  # (n_captions,)
        if protocol == "all":
            return retrieval_recall(scores, caption_to_image, ks=ks)
        if protocol == "coco_1k":
            return coco_1k_5fold(scores, caption_to_image, ks=ks, num_folds=num_folds, fold_size=fold_size)
        raise ValueError(f"unknown protocol {protocol!r}; choose 'all' or 'coco_1k'")
