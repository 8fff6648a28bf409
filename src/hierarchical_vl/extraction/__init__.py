"""Region features from raw images: the bottom-up-attention detector (DESIGN.md section 7) in plain PyTorch.

[`RegionFeatureExtractor`] turns images (PIL images, paths or arrays) into the boxes, 2048-d features and
object/attribute predictions that the rest of the package reads; it loads the community port's weights
(``unc-nlp/frcnn-vg-finetuned``) or this package's own ``save_pretrained`` format.
"""

from .configuration_extractor import RegionFeatureExtractorConfig, available_detector_presets
from .extractor import RegionFeatureExtractor, RegionFeatures, select_regions
from .image_processing import ImageGeometry, detector_input, load_rgb_image, resized_geometry
from .modeling_detector import BottomUpDetector

__all__ = [
    "BottomUpDetector",
    "ImageGeometry",
    "RegionFeatureExtractor",
    "RegionFeatureExtractorConfig",
    "RegionFeatures",
    "available_detector_presets",
    "detector_input",
    "load_rgb_image",
    "resized_geometry",
    "select_regions",
]
