"""hierarchical-vl: the multi-task hierarchical vision-language model of Nguyen & Okatani (CVPR 2019).

The top level holds what most users call: the configuration, the models, the tokenizer and processor, GloVe loading,
`load_checkpoint` and `optimize_for_inference` (int8 / bf16 CPU inference). The rest lives in its own module: the
building blocks and outputs in ``hierarchical_vl.modeling_hierarchical_vl``, the task registry in
``hierarchical_vl.tasks``, data in ``hierarchical_vl.data``, metrics in ``hierarchical_vl.metrics``, evaluation in
``hierarchical_vl.evaluation``, pipelines and predictors in ``hierarchical_vl.pipelines``, the region-feature
extractor in ``hierarchical_vl.extraction``, the Hub helpers in ``hierarchical_vl.hub``.

Importing the package registers the model with transformers' Auto classes and its pipelines.
"""

from .auto_registration import register_auto_classes
from .configuration_hierarchical_vl import HierarchicalVLConfig, available_presets
from .extraction import RegionFeatureExtractor, RegionFeatureExtractorConfig
from .inference_optimization import optimize_for_inference
from .loading import load_checkpoint, load_processor
from .modeling_hierarchical_vl import (
    HierarchicalVLForImageTextRetrieval,
    HierarchicalVLForMultiTask,
    HierarchicalVLForVisualGrounding,
    HierarchicalVLForVisualQuestionAnswering,
    HierarchicalVLModel,
    HierarchicalVLPreTrainedModel,
)
from .pipelines import register_pipelines
from .processing_hierarchical_vl import HierarchicalVLProcessor
from .tokenization_hierarchical_vl import HierarchicalVLTokenizer, load_glove_embeddings

__version__ = "0.1.0"

register_auto_classes()
register_pipelines()

__all__ = [
    "HierarchicalVLConfig",
    "HierarchicalVLForImageTextRetrieval",
    "HierarchicalVLForMultiTask",
    "HierarchicalVLForVisualGrounding",
    "HierarchicalVLForVisualQuestionAnswering",
    "HierarchicalVLModel",
    "HierarchicalVLPreTrainedModel",
    "HierarchicalVLProcessor",
    "HierarchicalVLTokenizer",
    "RegionFeatureExtractor",
    "RegionFeatureExtractorConfig",
    "__version__",
    "available_presets",
    "load_checkpoint",
    "load_glove_embeddings",
    "load_processor",
    "optimize_for_inference",
]
