"""Data for the hierarchical vision-language model.

* Region features: readers for the distributed formats ([`FEATURE_FORMATS`]: bottom-up TSV, LXMERT TSV, HDF5,
  npz/npy directory, LMDB), all converted into one float16 memory-mapped [`RegionFeatureStore`]
  (``hvl features convert``), and writers of those formats.
* Annotations as ``datasets`` datasets (map-style or ``streaming=True``): VQA 2.0, Karpathy captions,
  Flickr30k Entities.
* Region features as a Parquet ``datasets`` dataset: export a store, load it locally or from the Hub (streaming),
  import it back, publish it with a dataset card; a seeded, resumable stream of windows for the collators.
* Encoded datasets and collators that join annotations with the store into model inputs, fast.
* The contamination guard, and a synthetic demo corpus in the real formats (``hvl data demo``).

``datasets`` is needed only by the annotation loaders; ``h5py`` and ``lmdb`` only by their readers. Helpers and
result types that are not re-exported here stay importable from their modules (e.g.
``hierarchical_vl.data.flickr30k_entities.parse_entities_sentence``).
"""

from __future__ import annotations

from ..metrics.grounding import box_iou
from .captions import karpathy_test_folds, load_karpathy_captions
from .collators import GroundingCollator, RetrievalCollator, VQACollator
from .contamination import (
    ContaminationError,
    SplitImages,
    check_contamination,
    find_contamination,
    run_splits,
)
from .demo_corpus import DemoCorpusPaths, generate_demo_corpus
from .encoded_datasets import EncodedCaptionDataset, EncodedGroundingDataset, EncodedVQADataset
from .feature_dataset_hub import publish_feature_dataset, render_feature_dataset_card
from .feature_readers import (
    FEATURE_FORMATS,
    RegionFeatureError,
    RegionFeatureReader,
    RegionFeatureRecord,
    detect_feature_format,
    open_region_feature_reader,
)
from .feature_store import RegionFeatureStore, RegionFeatureStoreWriter, convert_region_features
from .feature_writers import (
    write_bottom_up_tsv,
    write_hdf5,
    write_lmdb,
    write_lxmert_tsv,
    write_npz_directory,
)
from .flickr30k_entities import entities_phrase_counts, load_flickr30k_entities
from .image_regions import ImageRegions, UnknownImageError, resolve_image
from .json_stream import iter_json_array
from .parquet_features import (
    ParquetExport,
    export_store_to_parquet,
    import_parquet_to_store,
    load_region_features,
    region_feature_features,
)
from .streaming_features import RegionFeatureWindow, StreamingBatches, StreamingRegionFeatures
from .vqa import build_vqa_answer_vocab, load_vqa, vqa_answer_vocab, vqa_data_files, vqa_soft_score

__all__ = [
    "FEATURE_FORMATS",
    "ContaminationError",
    "DemoCorpusPaths",
    "EncodedCaptionDataset",
    "EncodedGroundingDataset",
    "EncodedVQADataset",
    "GroundingCollator",
    "ImageRegions",
    "ParquetExport",
    "RegionFeatureError",
    "RegionFeatureReader",
    "RegionFeatureRecord",
    "RegionFeatureStore",
    "RegionFeatureStoreWriter",
    "RegionFeatureWindow",
    "RetrievalCollator",
    "SplitImages",
    "StreamingBatches",
    "StreamingRegionFeatures",
    "UnknownImageError",
    "VQACollator",
    "box_iou",
    "build_vqa_answer_vocab",
    "check_contamination",
    "convert_region_features",
    "detect_feature_format",
    "entities_phrase_counts",
    "export_store_to_parquet",
    "find_contamination",
    "generate_demo_corpus",
    "import_parquet_to_store",
    "iter_json_array",
    "karpathy_test_folds",
    "load_flickr30k_entities",
    "load_karpathy_captions",
    "load_region_features",
    "load_vqa",
    "open_region_feature_reader",
    "publish_feature_dataset",
    "region_feature_features",
    "render_feature_dataset_card",
    "resolve_image",
    "run_splits",
    "vqa_answer_vocab",
    "vqa_data_files",
    "vqa_soft_score",
    "write_bottom_up_tsv",
    "write_hdf5",
    "write_lmdb",
    "write_lxmert_tsv",
    "write_npz_directory",
]
