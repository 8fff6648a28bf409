"""The extractor on tiny random detectors: batch invariance, the input convention, exact resizing and box
rescaling, determinism, given boxes, the selection rule, and the community checkpoint layout."""

import numpy as np
import pytest
import torch
from PIL import Image

from hierarchical_vl.extraction import (
    BottomUpDetector,
    RegionFeatureExtractor,
    RegionFeatureExtractorConfig,
    detector_input,
    resized_geometry,
    select_regions,
)

from .port_layout import port_config_yaml, port_key_shapes, write_random_port_checkpoint


def _same(a, b, atol=1e-4):
    assert a.num_boxes == b.num_boxes
    np.testing.assert_allclose(a.boxes, b.boxes, atol=atol)
    np.testing.assert_allclose(a.features, b.features, atol=atol, rtol=1e-4)
    np.testing.assert_array_equal(a.object_ids, b.object_ids)
    np.testing.assert_array_equal(a.attribute_ids, b.attribute_ids)


def test_image_alone_and_in_a_batch_of_other_sizes_agree(tiny_extractor, images):
    alone = [tiny_extractor(image)[0] for image in images]
    batched = tiny_extractor(images)
    reordered = tiny_extractor(images[::-1])[::-1]
    for a, b, c in zip(alone, batched, reordered):
        _same(a, b)
        _same(a, c)
    assert len({r.num_boxes for r in alone}) >= 1 and all(r.num_boxes >= 4 for r in alone)


def test_results_are_deterministic(images):
    first = RegionFeatureExtractor.from_preset("tiny", seed=3)(images[:2])
    second = RegionFeatureExtractor.from_preset("tiny", seed=3)(images[:2])
    for a, b in zip(first, second):
        _same(a, b, atol=0)


def test_output_shapes_and_ranges(tiny_extractor, images):
    config = tiny_extractor.config
    for image, result in zip(images, tiny_extractor(images)):
        h, w = image.shape[:2]
        assert (result.width, result.height) == (w, h)
        assert config.min_boxes <= result.num_boxes <= config.max_boxes
        assert result.features.shape == (result.num_boxes, config.feature_dim)
        assert result.boxes.dtype == np.float32 and result.features.dtype == np.float32
        assert (result.boxes[:, 0] >= 0).all() and (result.boxes[:, 2] <= w + 1e-4).all()
        assert (result.boxes[:, 1] >= 0).all() and (result.boxes[:, 3] <= h + 1e-4).all()
        assert ((result.object_ids >= 0) & (result.object_ids < config.num_classes)).all()
        assert ((result.attribute_ids >= 0) & (result.attribute_ids < config.num_attributes)).all()
        assert ((result.object_scores > 0) & (result.object_scores <= 1)).all()


def test_pil_image_path_and_array_give_the_same_result(tiny_extractor, images, tmp_path):
    path = tmp_path / "photo.png"
    Image.fromarray(images[0]).save(path)
    from_array, from_pil, from_path = tiny_extractor([images[0], Image.open(path), str(path)])
    _same(from_array, from_pil, atol=0)
    _same(from_array, from_path, atol=0)


def test_channel_order_and_mean_subtraction_applied_once():
    config = RegionFeatureExtractorConfig.from_preset("tiny", min_size=4, max_size=4)
    rgb = np.zeros((4, 4, 3), dtype=np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 10  # R G B
    tensor, _ = detector_input(rgb, config)
    mean = config.pixel_mean  # BGR order
    expected = [10 - mean[0], 100 - mean[1], 200 - mean[2]]  # channel 0 is blue
    np.testing.assert_allclose(tensor[:, 0, 0].numpy(), expected, atol=1e-4)
    rgb_config = RegionFeatureExtractorConfig.from_preset("tiny", min_size=4, max_size=4, input_format="RGB")
    rgb_tensor, _ = detector_input(rgb, rgb_config)
    np.testing.assert_allclose(rgb_tensor[:, 0, 0].numpy(), [200 - mean[0], 100 - mean[1], 10 - mean[2]], atol=1e-4)


@pytest.mark.parametrize(
    ("size", "expected"),
    [((480, 640), (600, 800)), ((100, 1000), (100, 1000)), ((300, 300), (600, 600)), ((1200, 500), (1000, 417))],
)
def test_resize_follows_shortest_and_longest_side(size, expected):
    geometry = resized_geometry(*size, 600, 1000)
    assert (geometry.resized_height, geometry.resized_width) == expected


def test_a_drawn_box_lands_at_its_scaled_place_and_comes_back_in_original_pixels():
    config = RegionFeatureExtractorConfig.from_preset("tiny")  # 96 / 160
    rgb = np.zeros((60, 80, 3), dtype=np.uint8)
    rgb[15:45, 20:60] = 255  # the box x 20-60, y 15-45 in original pixels
    tensor, geometry = detector_input(rgb, config)
    assert (geometry.resized_height, geometry.resized_width) == (96, 128)
    bright = tensor[0] > (127 - config.pixel_mean[0])  # (h, w)
    rows, cols = torch.nonzero(bright, as_tuple=True)
    box = torch.tensor([[20.0, 15.0, 60.0, 45.0]])
    resized = geometry.to_resized(box)[0]  # x 32-96, y 24-72
    assert abs(cols.min().item() - resized[0].item()) <= 1 and abs(cols.max().item() + 1 - resized[2].item()) <= 1
    assert abs(rows.min().item() - resized[1].item()) <= 1 and abs(rows.max().item() + 1 - resized[3].item()) <= 1
    torch.testing.assert_close(geometry.to_original(geometry.to_resized(box)), box)


def test_given_boxes_come_back_exactly_in_order_with_the_detected_features(tiny_extractor, images):
    detected = tiny_extractor(images[1])[0]
    given = detected.boxes[::-1].copy()
    pooled = tiny_extractor(images[1], boxes=given)[0]
    np.testing.assert_array_equal(pooled.boxes, given)
    np.testing.assert_allclose(pooled.features, detected.features[::-1], atol=1e-3, rtol=1e-3)
    custom = np.array([[0, 0, 200, 64], [5.5, 6.5, 30.25, 40], [100, 10, 120, 20]], dtype=np.float32)
    several = tiny_extractor([images[1], images[0]], boxes=[custom, custom[:1]])
    np.testing.assert_array_equal(several[0].boxes, custom)
    np.testing.assert_array_equal(several[1].boxes, custom[:1])
    assert several[0].features.shape == (3, tiny_extractor.config.feature_dim)
    with pytest.raises(ValueError, match="given boxes"):
        tiny_extractor(images[0], boxes=np.zeros((2, 3)))


def test_selection_rule_of_the_feature_script():
    config = RegionFeatureExtractorConfig.from_preset("tiny", conf_threshold=0.5, min_boxes=2, max_boxes=3)
    assert select_regions(torch.tensor([0.9, 0.1, 0.6, 0.2, 0.3, 0.05]), config).tolist() == [0, 2]
    assert select_regions(torch.tensor([0.9, 0.1, 0.6, 0.7, 0.8, 0.55]), config).tolist() == [0, 4, 3]
    assert select_regions(torch.tensor([0.4, 0.1, 0.6, 0.2, 0.3, 0.05]), config).tolist() == [2, 0]
    fixed = config.with_selection(num_boxes=36)
    assert (fixed.conf_threshold, fixed.min_boxes, fixed.max_boxes) == (0.4, 36, 36)


def test_full_size_detector_has_the_community_checkpoint_layout():
    with torch.device("meta"):
        detector = BottomUpDetector(RegionFeatureExtractorConfig())
    ours = {k: tuple(v.shape) for k, v in detector.state_dict().items()}
    port = {k: v for k, v in port_key_shapes().items() if not k.endswith("num_batches_tracked")}
    assert ours == port
    assert RegionFeatureExtractorConfig().feature_dim == 2048


def _tiny_port_checkpoint(directory):
    shapes = port_key_shapes(
        blocks=(3, 4, 6, 3), stem=8, res2=16, width=4, rpn_hidden=16, num_anchors=6, num_classes=11, num_attributes=5
    )
    tree = port_config_yaml(
        [24, 48, 96],
        [0.5, 1.0],
        depth=50,
        stem=8,
        res2=16,
        width=4,
        rpn_hidden=16,
        classes=11,
        attributes=5,
        pooler=4,
        min_size=96,
        max_size=160,
        pre=150,
        post=30,
    )
    return write_random_port_checkpoint(directory, shapes, tree)


def test_port_checkpoint_loads_with_no_missing_or_unexpected_keys_and_round_trips(tmp_path, images):
    port = _tiny_port_checkpoint(tmp_path / "port")
    extractor = RegionFeatureExtractor.from_pretrained(port)
    config = extractor.config
    assert config.blocks_per_stage == [3, 4, 6, 3] and config.num_classes == 11 and config.pooler_resolution == 4
    assert (config.min_size, config.max_size, config.rpn_post_nms_top_n) == (96, 160, 30)
    assert config.input_format == "BGR" and config.res5_dilation_head
    state = torch.load(port / "pytorch_model.bin", weights_only=True)
    for key, value in extractor.detector.state_dict().items():
        torch.testing.assert_close(value, state[key])
    results = extractor(images[:2])
    own = extractor.save_pretrained(tmp_path / "own")
    assert sorted(p.name for p in own.iterdir()) == ["config.json", "model.safetensors"]
    again = RegionFeatureExtractor.from_pretrained(own)
    assert again.config == config
    for a, b in zip(results, again(images[:2])):
        _same(a, b, atol=0)
    fixed = RegionFeatureExtractor.from_pretrained(own, num_boxes=5)(images[0])[0]
    assert fixed.num_boxes == 5


def test_wrong_checkpoint_is_refused_naming_the_keys(tmp_path):
    port = _tiny_port_checkpoint(tmp_path / "port")
    state = torch.load(port / "pytorch_model.bin", weights_only=True)
    state["roi_heads.extra.weight"] = torch.zeros(1)
    del state["backbone.stem.conv1.weight"]
    torch.save(state, port / "pytorch_model.bin")
    with pytest.raises(ValueError, match=r"missing keys \['backbone.stem.conv1.weight'\].*unexpected keys"):
        RegionFeatureExtractor.from_pretrained(port)
    with pytest.raises(FileNotFoundError, match="holds no detector"):
        RegionFeatureExtractor.from_pretrained(tmp_path)
