"""Registration of the model's classes with transformers' Auto classes and remote-code saving."""

from __future__ import annotations

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForVisualQuestionAnswering,
    AutoProcessor,
    AutoTokenizer,
)

from .configuration_hierarchical_vl import HierarchicalVLConfig
from .modeling_hierarchical_vl import (
    HierarchicalVLForImageTextRetrieval,
    HierarchicalVLForMultiTask,
    HierarchicalVLForVisualGrounding,
    HierarchicalVLForVisualQuestionAnswering,
    HierarchicalVLModel,
)
from .processing_hierarchical_vl import HierarchicalVLProcessor
from .tokenization_hierarchical_vl import HierarchicalVLTokenizer

__all__ = ["register_auto_classes"]

_REGISTERED = False


def register_auto_classes() -> None:
    """Makes the Auto classes know ``model_type="hierarchical_vl"`` and mark the classes for remote-code saving.

    A saved checkpoint then carries ``configuration_hierarchical_vl.py`` and ``modeling_hierarchical_vl.py`` and an
    ``auto_map``, so that ``AutoModel.from_pretrained(path, trust_remote_code=True)`` loads the class that saved it
    (the encoder, a single-task head or the multi-task model) where this package is not installed. With the package
    imported, ``AutoModel`` gives the encoder and ``AutoModelForVisualQuestionAnswering`` the VQA head. Idempotent.
    """
    global _REGISTERED
    if _REGISTERED:
        return
    AutoConfig.register(HierarchicalVLConfig.model_type, HierarchicalVLConfig, exist_ok=True)
    AutoModel.register(HierarchicalVLConfig, HierarchicalVLModel, exist_ok=True)
    AutoModelForVisualQuestionAnswering.register(
        HierarchicalVLConfig, HierarchicalVLForVisualQuestionAnswering, exist_ok=True
    )
    AutoTokenizer.register(HierarchicalVLConfig, tokenizer_class=HierarchicalVLTokenizer, exist_ok=True)
    AutoProcessor.register(HierarchicalVLConfig, HierarchicalVLProcessor, exist_ok=True)

    HierarchicalVLConfig.register_for_auto_class()
    HierarchicalVLTokenizer.register_for_auto_class("AutoTokenizer")
    HierarchicalVLProcessor.register_for_auto_class("AutoProcessor")
    # With remote code, ``AutoModel`` loads the class that saved the checkpoint (encoder, a head or multi-task).
    for model_class in (
        HierarchicalVLModel,
        HierarchicalVLForVisualQuestionAnswering,
        HierarchicalVLForImageTextRetrieval,
        HierarchicalVLForVisualGrounding,
        HierarchicalVLForMultiTask,
    ):
        model_class.register_for_auto_class("AutoModel")
    _REGISTERED = True
