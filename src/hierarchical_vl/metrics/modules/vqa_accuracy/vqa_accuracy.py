"""``evaluate`` module for the official VQA accuracy (wraps [`hierarchical_vl.metrics.vqa_accuracy`])."""

from __future__ import annotations

import datasets
import evaluate

from hierarchical_vl.metrics.evaluate_modules import metric_module
from hierarchical_vl.metrics.vqa import vqa_accuracy

__all__ = ["VqaAccuracy"]

_DESCRIPTION = """\
VQA accuracy as computed by the official VQA evaluation code: a predicted answer scores
min(1, #matching human answers among the other 9 / 3), averaged over the 10 leave-one-out subsets of the 10 human
answers, after the official answer normalisation. Reported in percent (2 decimals), overall and per answer type.
By default the current official code is used; `legacy=True` reproduces the code before its 2021 fix (prediction
always normalised, human answers punctuation-processed only), which scored the papers of 2015-2020.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): one predicted answer per question.
    references: per question, either the list of its 10 human answers (`list` of `str`) or a record
        `{"answers": list of 10 str, "answer_type": str}` (answer type "yes/no", "number" or "other"). All references
        of one computation must use the same form.
    legacy (`bool`, defaults to `False`): use the pre-2021 official code.
Returns:
    overall (`float`): accuracy in percent, rounded to 2 decimals.
    per_answer_type (`dict`): accuracy per answer type (empty when no answer types are given).
    counts (`dict`): number of questions, overall and per answer type.
Examples:
    >>> metric = load_metric("vqa_accuracy")
    >>> metric.compute(predictions=["two"], references=[["2"] * 3 + ["3"] * 7])
    {'overall': 90.0, 'per_answer_type': {}, 'counts': {'overall': 1}}
"""

_CITATION = """\
@inproceedings{antol2015vqa,
  title={{VQA}: Visual Question Answering},
  author={Antol, Stanislaw and Agrawal, Aishwarya and Lu, Jiasen and Mitchell, Margaret and Batra, Dhruv and
          Zitnick, C. Lawrence and Parikh, Devi},
  booktitle={ICCV},
  year={2015}
}
"""

_WITH_TYPES = datasets.Features(
    {
        "predictions": datasets.Value("string"),
        "references": {
            "answers": datasets.Sequence(datasets.Value("string")),
            "answer_type": datasets.Value("string"),
        },
    }
)
_ANSWERS_ONLY = datasets.Features(
    {
        "predictions": datasets.Value("string"),
        "references": datasets.Sequence(datasets.Value("string")),
    }
)


@metric_module(
    _DESCRIPTION,
    _KWARGS_DESCRIPTION,
    _CITATION,
    [_WITH_TYPES, _ANSWERS_ONLY],
    reference_urls=["https://github.com/GT-Vision-Lab/VQA", "https://visualqa.org/evaluation.html"],
)
class VqaAccuracy(evaluate.Metric):
    """Official VQA accuracy (current or legacy normalisation)."""

    def _compute(self, predictions, references, legacy=False):
        if references and isinstance(references[0], dict):
            answers = [reference["answers"] for reference in references]
            answer_types = [reference["answer_type"] for reference in references]
        else:
            answers, answer_types = references, None
        return vqa_accuracy(predictions, answers, answer_types=answer_types, legacy=legacy)
