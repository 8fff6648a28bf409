"""NMS, class-wise NMS and RoI pooling against brute-force loops (and torchvision where it imports)."""

import math

import pytest
import torch

from hierarchical_vl.extraction.box_ops import (
    apply_box_deltas,
    box_iou,
    classwise_nms_max_scores,
    nms,
    roi_pool,
    torchvision_ops,
)


def _random_boxes(n, generator, size=100.0):
    xy = torch.rand(n, 2, generator=generator) * size
    wh = torch.rand(n, 2, generator=generator) * size / 2 + 1
    return torch.cat([xy, xy + wh], dim=1)


def _iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _greedy_nms(boxes, scores, threshold):
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    kept = []
    for i in order:
        if all(_iou(boxes[i], boxes[k]) <= threshold for k in kept):
            kept.append(i)
    return kept


def test_box_iou_matches_pairwise_formula():
    g = torch.Generator().manual_seed(0)
    a, b = _random_boxes(7, g), _random_boxes(5, g)
    expected = torch.tensor([[_iou(x.tolist(), y.tolist()) for y in b] for x in a])
    torch.testing.assert_close(box_iou(a, b), expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_nms_matches_greedy_loop(threshold):
    g = torch.Generator().manual_seed(1)
    for n in (1, 2, 40, 150):
        boxes, scores = _random_boxes(n, g), torch.rand(n, generator=g)
        expected = _greedy_nms(boxes.tolist(), scores.tolist(), threshold)
        assert nms(boxes, scores, threshold).tolist() == expected


def test_nms_of_nothing_and_of_identical_boxes():
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.5).numel() == 0
    boxes = torch.tensor([[0.0, 0, 10, 10]] * 4)
    assert nms(boxes, torch.tensor([0.1, 0.9, 0.5, 0.9]), 0.5).tolist() == [1]  # ties: the lower index


def test_classwise_nms_matches_per_class_loops():
    g = torch.Generator().manual_seed(2)
    boxes = _random_boxes(60, g)
    scores = torch.softmax(torch.randn(60, 9, generator=g) * 2, dim=1)
    expected = [0.0] * 60
    for c in range(9):
        for i in _greedy_nms(boxes.tolist(), scores[:, c].tolist(), 0.3):
            expected[i] = max(expected[i], float(scores[i, c]))
    torch.testing.assert_close(classwise_nms_max_scores(boxes, scores, 0.3), torch.tensor(expected))


def _roi_pool_loop(features, boxes, size, scale):
    """Fast R-CNN's RoIPool, one bin at a time (the Caffe/torchvision kernel's arithmetic)."""
    channels, height, width = features.shape
    out = torch.zeros(len(boxes), channels, size, size)

    def c_round(v):
        return math.floor(v + 0.5) if v >= 0 else -math.floor(-v + 0.5)

    for n, box in enumerate(boxes.tolist()):
        x1, y1, x2, y2 = (c_round(torch.tensor(v * scale, dtype=torch.float32).item()) for v in box)
        roi_w, roi_h = max(x2 - x1 + 1, 1), max(y2 - y1 + 1, 1)
        bin_h = torch.tensor(roi_h, dtype=torch.float32) / size
        bin_w = torch.tensor(roi_w, dtype=torch.float32) / size
        for ph in range(size):
            h0 = min(max(int(math.floor(ph * bin_h)) + y1, 0), height)
            h1 = min(max(int(math.ceil((ph + 1) * bin_h)) + y1, 0), height)
            for pw in range(size):
                w0 = min(max(int(math.floor(pw * bin_w)) + x1, 0), width)
                w1 = min(max(int(math.ceil((pw + 1) * bin_w)) + x1, 0), width)
                if h1 > h0 and w1 > w0:
                    out[n, :, ph, pw] = features[:, h0:h1, w0:w1].amax(dim=(1, 2))
    return out


def _pool_cases():
    g = torch.Generator().manual_seed(3)
    features = torch.randn(5, 9, 13, generator=g)
    boxes = torch.cat(
        [
            _random_boxes(20, g, size=200.0),
            torch.tensor([[0.0, 0, 207, 143], [8.0, 8.0, 8.0, 8.0], [-30.0, -20, 40, 30], [190.0, 130, 400, 300]]),
        ]
    )
    return features, boxes


@pytest.mark.parametrize("size", [1, 3, 7])
def test_roi_pool_matches_bin_loop(size):
    features, boxes = _pool_cases()
    expected = _roi_pool_loop(features, boxes, size, 1 / 16)
    torch.testing.assert_close(roi_pool(features, boxes, size, 1 / 16), expected)
    # small chunks give the same result
    torch.testing.assert_close(roi_pool(features, boxes, size, 1 / 16, max_elements=1), expected)


def test_apply_box_deltas_zero_is_identity_and_shift_moves_centre():
    boxes = torch.tensor([[10.0, 20.0, 30.0, 60.0]])
    torch.testing.assert_close(apply_box_deltas(torch.zeros(1, 8), boxes, (1, 1, 1, 1)), boxes.repeat(1, 2))
    moved = apply_box_deltas(torch.tensor([[0.5, 0.0, 0.0, 0.0]]), boxes, (1, 1, 1, 1))
    torch.testing.assert_close(moved, torch.tensor([[20.0, 20.0, 40.0, 60.0]]))


@pytest.mark.skipif(torchvision_ops() is None, reason="torchvision does not import beside this torch")
def test_against_torchvision():
    ops = torchvision_ops()
    features, boxes = _pool_cases()
    rois = torch.cat([torch.zeros(len(boxes), 1), boxes], dim=1)
    torch.testing.assert_close(roi_pool(features, boxes, 7, 1 / 16), ops.roi_pool(features[None], rois, 7, 1 / 16))
    g = torch.Generator().manual_seed(4)
    boxes, scores = _random_boxes(200, g), torch.rand(200, generator=g)
    assert nms(boxes, scores, 0.5).tolist() == ops.nms(boxes, scores, 0.5).tolist()
