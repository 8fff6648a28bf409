"""``evaluate`` module for phrase grounding Recall@K (wraps [`hierarchical_vl.metrics.grounding_recall`])."""

from __future__ import annotations

import datasets
import evaluate

from hierarchical_vl.metrics.evaluate_modules import metric_module
from hierarchical_vl.metrics.grounding import grounding_recall

__all__ = ["GroundingRecall"]

_DESCRIPTION = """\
Phrase grounding Recall@K (Flickr30k Entities): a phrase counts at K when one of its K best-scoring candidate
regions has IoU >= 0.5 with any of its ground-truth boxes (`box_matching="any"`) or with their merged (union) box
(`box_matching="merged"`, the rule of Plummer et al.); ties are broken against the ground truth. Also reports the
upper bound, the percentage of phrases for which some candidate region reaches the threshold under that rule. Boxes are
x1 y1 x2 y2 in pixels, continuous coordinates (width = x2 - x1) unless `offset=1`.

Input schema: one example per phrase. `predictions` are the scores of the candidate regions of the phrase's image,
`region_boxes` their boxes (same length) and `references` the phrase's ground-truth boxes (at least one).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `float`): per phrase, one score per candidate region.
    region_boxes (`list` of `list` of 4 `float`): per phrase, the candidate region boxes.
    references (`list` of `list` of 4 `float`): per phrase, its ground-truth boxes.
    ks (`tuple` of `int`, defaults to `(1, 5, 10)`): the K of Recall@K.
    iou_threshold (`float`, defaults to 0.5): IoU a region needs to count as correct.
    offset (`float`, defaults to 0): 0 for continuous box coordinates, 1 for inclusive pixel coordinates.
    box_matching (`str`, defaults to `"any"`): `"any"` (one of the phrase's boxes) or `"merged"` (their union box).
Returns:
    r1, r5, r10, upper_bound (`float`, percent), num_phrases (`int`).
Examples:
    >>> metric = load_metric("grounding_recall")
    >>> metric.compute(predictions=[[0.9, 0.1]], region_boxes=[[[0, 0, 10, 10], [20, 20, 30, 30]]],
    ...                references=[[[0, 0, 10, 9]]])["r1"]
    100.0
"""

_CITATION = """\
@inproceedings{plummer2015flickr30k,
  title={Flickr30k Entities: Collecting Region-to-Phrase Correspondences for Richer Image-to-Sentence Models},
  author={Plummer, Bryan A. and Wang, Liwei and Cervantes, Chris M. and Caicedo, Juan C. and Hockenmaier, Julia and
          Lazebnik, Svetlana},
  booktitle={ICCV},
  year={2015}
}
"""

_BOXES = datasets.Sequence(datasets.Sequence(datasets.Value("float64"), length=4))
_FEATURES = datasets.Features(
    {
        "predictions": datasets.Sequence(datasets.Value("float64")),
        "region_boxes": _BOXES,
        "references": _BOXES,
    }
)


@metric_module(_DESCRIPTION, _KWARGS_DESCRIPTION, _CITATION, _FEATURES)
class GroundingRecall(evaluate.Metric):
    """Phrase grounding Recall@K and its upper bound."""

    def _compute(
        self, predictions, region_boxes, references, ks=(1, 5, 10), iou_threshold=0.5, offset=0.0, box_matching="any"
    ):
        return grounding_recall(
            predictions,
            region_boxes,
            references,
            ks=ks,
            iou_threshold=iou_threshold,
            offset=offset,
            box_matching=box_matching,
        )
