"""hierarchical-vl: the multi-task hierarchical vision-language model of Nguyen & Okatani (CVPR 2019).

The model, tokenizer and processor are importable from here; data loading lives in ``hierarchical_vl.data``,
metrics in ``hierarchical_vl.metrics`` and prediction helpers in ``hierarchical_vl.pipelines``.
"""

from .auto_registration import register_auto_classes
from .configuration_hierarchical_vl import TASKS, HierarchicalVLConfig, available_presets
from .modeling_hierarchical_vl import (
    DenseCoAttentionLayer,
    HierarchicalVLForImageTextRetrieval,
    HierarchicalVLForMultiTask,
    HierarchicalVLForVisualGrounding,
    HierarchicalVLForVisualQuestionAnswering,
    HierarchicalVLGroundingOutput,
    HierarchicalVLModel,
    HierarchicalVLModelOutput,
    HierarchicalVLPreTrainedModel,
    HierarchicalVLRetrievalOutput,
    HierarchicalVLVQAOutput,
)
from .pipelines import register_pipelines
from .processing_hierarchical_vl import HierarchicalVLProcessor, char_spans_to_token_spans
from .tokenization_hierarchical_vl import GloveCoverage, HierarchicalVLTokenizer, load_glove_embeddings

__version__ = "0.1.0"

register_auto_classes()
register_pipelines()

__all__ = [
    "TASKS",
    "DenseCoAttentionLayer",
    "GloveCoverage",
    "HierarchicalVLConfig",
    "HierarchicalVLForImageTextRetrieval",
    "HierarchicalVLForMultiTask",
    "HierarchicalVLForVisualGrounding",
    "HierarchicalVLForVisualQuestionAnswering",
    "HierarchicalVLGroundingOutput",
    "HierarchicalVLModel",
    "HierarchicalVLModelOutput",
    "HierarchicalVLPreTrainedModel",
    "HierarchicalVLProcessor",
    "HierarchicalVLRetrievalOutput",
    "HierarchicalVLTokenizer",
    "HierarchicalVLVQAOutput",
    "__version__",
    "available_presets",
    "char_spans_to_token_spans",
    "load_glove_embeddings",
    "register_auto_classes",
    "register_pipelines",
]
