"""A CPU inference fast path: int8 dynamic quantisation or bfloat16 weights, optionally compiled.

`optimize_for_inference` turns a trained model (any head, the multi-task model or the encoder) into an inference-only
copy:

* ``"int8"``: ``torch.ao.quantization.quantize_dynamic`` over every ``nn.Linear`` and the ``nn.LSTM`` but the VQA
  answer classifier's: weights stored in int8 (per tensor), activations quantised on the fly per call; the word
  embeddings, the answer classifier, the learned null tokens and LSTM states kept in float32. Outputs are float32.
* ``"bf16"``: the weights cast to bfloat16 and every entry point (``forward`` and the pair-scoring
  ``encode_captions`` / ``encode_images`` / ``score_encoded_pairs``) run under bfloat16 autocast on the model's
  device, so float32 inputs are accepted; floating outputs are returned in float32.
* ``"fp32"``: the model unchanged (in eval mode), e.g. to compile it only.

The copy records its precision in ``inference_precision`` (the model card states it). A model without that
attribute is float32.

Saving: a bfloat16 model saves like any model, its weights in bfloat16 (``from_pretrained`` loads them as a
bfloat16 model, or as float32 holding the same values with ``dtype=torch.float32``; apply ``"bf16"`` again for the
autocast entry points). An int8 model cannot be saved: its packed weights do not load back into the model classes,
and the float32 weights it was made from are gone; `check_savable` raises a ``ValueError`` saying so (the Hub
helpers call it). Save the float32 model and apply the precision after loading instead.
"""

from __future__ import annotations

import copy
import functools
import warnings
from typing import Any

import torch
from torch import nn

__all__ = [
    "INFERENCE_PRECISIONS",
    "check_savable",
    "describe_precision",
    "inference_precision",
    "optimize_for_inference",
]

INFERENCE_PRECISIONS = ("fp32", "bf16", "int8")
"""The precisions `optimize_for_inference` accepts."""

_PRECISION_DESCRIPTIONS = {
    "bf16": "bfloat16 weights, run under bfloat16 autocast; scores returned in float32",
    "int8": (
        "int8 dynamic quantisation of the linear and LSTM layers (word embeddings and answer classifier in float32)"
    ),
}

# Modules under a module of this name keep their float32 weights in int8 mode (`_int8_layers`).
_FLOAT32_MODULE = "classifier"

# The methods a bfloat16 model runs under autocast (those of the model that exist).
_AUTOCAST_METHODS = ("forward", "encode_captions", "encode_images", "score_encoded_pairs")


def inference_precision(model: nn.Module) -> str:
    """The precision `optimize_for_inference` gave ``model`` (``"fp32"`` for any other model)."""
    return getattr(model, "inference_precision", "fp32")


def describe_precision(precision: str) -> str | None:
    """One line describing a non-float32 ``precision`` for the model card (``None`` for ``"fp32"``)."""
    return _PRECISION_DESCRIPTIONS.get(_checked(precision))


def check_savable(model: nn.Module) -> None:
    """Raise ``ValueError`` when ``model`` cannot be saved as a checkpoint (an int8 dynamically quantised one)."""
    if inference_precision(model) == "int8":
        raise ValueError(
            "an int8 model made by optimize_for_inference cannot be saved: its packed int8 weights do not load back "
            "into the model classes. Save the float32 model, and apply precision='int8' after loading it "
            "(optimize_for_inference, or the pipelines' and predictors' precision argument)"
        )


def _checked(precision: str) -> str:
    if precision not in INFERENCE_PRECISIONS:
        raise ValueError(f"precision must be one of {list(INFERENCE_PRECISIONS)}, got {precision!r}")
    return precision


def _to_float32(value: Any) -> Any:
    """``value`` with its floating tensors in float32 (tensors, tuples, lists and ``ModelOutput`` dicts)."""
    if isinstance(value, torch.Tensor):
        return value.float() if value.is_floating_point() else value
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(_to_float32(item) for item in value)
    if isinstance(value, list):
        return [_to_float32(item) for item in value]
    if isinstance(value, dict):  # ModelOutput is an OrderedDict; assigning an item updates its attribute too
        for key in list(value.keys()):
            value[key] = _to_float32(value[key])
    return value


def _run_under_bfloat16_autocast(model: nn.Module, method: Any) -> Any:
    @functools.wraps(method)
    def run(*args: Any, **kwargs: Any) -> Any:
        device_type = next(model.parameters()).device.type
        with torch.autocast(device_type=device_type, dtype=torch.bfloat16):
            output = method(*args, **kwargs)
        return _to_float32(output) if method.__name__ == "forward" else output

    return run


def _quantized_int8(model: nn.Module) -> nn.Module:
    engines = torch.backends.quantized.supported_engines
    if torch.backends.quantized.engine == "none" or not engines:
        raise RuntimeError("this torch build has no quantised engine: int8 inference is not available")
    with warnings.catch_warnings():  # torch announces the move of eager quantisation to torchao
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, _int8_layers(model), dtype=torch.qint8, inplace=False)


def _int8_layers(model: nn.Module) -> dict[str, Any]:
    """The dynamic-quantisation spec of ``model``: each linear and LSTM layer by name, but the answer classifier's.

    The VQA answer classifier stays float32: on the trained demo model, quantising it too changed the top-1 answer
    of 1.85% of the val questions (98.15% agreement with float32), against 0.31% when it is kept (99.69%); see
    ``benchmarks/RESULTS.md``.
    """
    qconfig = torch.ao.quantization.default_dynamic_qconfig
    return {
        name: qconfig
        for name, module in model.named_modules()
        if isinstance(module, (nn.Linear, nn.LSTM)) and _FLOAT32_MODULE not in name.split(".")
    }


def optimize_for_inference(model: nn.Module, precision: str = "int8", compile: bool = False) -> nn.Module:
    """An inference-only copy of ``model`` in ``precision``, optionally compiled with ``torch.compile``.

    Args:
        model: A model of this package (any head, the multi-task model or the encoder), float32, on the CPU for
            ``"int8"`` (quantised kernels run on the CPU only).
        precision: ``"int8"`` (dynamic quantisation of the linear and LSTM layers), ``"bf16"`` (bfloat16 weights
            under autocast) or ``"fp32"`` (unchanged).
        compile: Also compile the copy in place (``nn.Module.compile``; the first calls pay for the compilation).
            On a 2-core CPU it helped none of the precisions measurably (``benchmarks/RESULTS.md``), so it is off
            by default.

    Returns:
        The model in eval mode with ``inference_precision`` set; a new object for ``"int8"`` and ``"bf16"`` (the
        argument is left as it was), ``model`` itself for ``"fp32"``. Outputs are float32 in every precision.

    Raises:
        ValueError: For an unknown precision, a model already optimised to another precision, or ``"int8"`` on a
            model not on the CPU.
    """
    _checked(precision)
    current = inference_precision(model)
    if current != "fp32":
        if current == precision and not compile:
            return model
        raise ValueError(f"this model already runs in {current}; optimise its float32 original to {precision!r}")
    if precision == "int8":
        device = next(model.parameters()).device
        if device.type != "cpu":
            raise ValueError(f"int8 dynamic quantisation runs on the CPU only; the model is on {device}")
        optimized = _quantized_int8(model.eval())
    elif precision == "bf16":
        optimized = copy.deepcopy(model).eval().to(torch.bfloat16)
        for name in _AUTOCAST_METHODS:
            method = getattr(optimized, name, None)
            if method is not None:
                setattr(optimized, name, _run_under_bfloat16_autocast(optimized, method))
    else:
        optimized = model.eval()
    if optimized is not model:
        optimized.requires_grad_(False)
    optimized.inference_precision = precision
    if compile:
        optimized.compile()
    return optimized
