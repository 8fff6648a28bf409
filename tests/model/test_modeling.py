import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from hierarchical_vl import (
    HierarchicalVLConfig,
    HierarchicalVLForImageTextRetrieval,
    HierarchicalVLForMultiTask,
    HierarchicalVLForVisualGrounding,
    HierarchicalVLForVisualQuestionAnswering,
    HierarchicalVLModel,
)
from hierarchical_vl.modeling_hierarchical_vl import DenseCoAttentionLayer, SummaryNetwork

from .model_tester import HierarchicalVLModelTester

TASK_KEYS = {
    "vqa": ("input_ids", "attention_mask", "region_features", "region_mask"),
    "retrieval": ("input_ids", "attention_mask", "region_features", "region_mask"),
    "grounding": (
        "input_ids",
        "attention_mask",
        "region_features",
        "region_mask",
        "phrase_spans",
        "phrase_mask",
    ),
}


@pytest.fixture
def tester():
    return HierarchicalVLModelTester()


@pytest.fixture
def config(tester):
    return tester.get_config()


@pytest.fixture
def inputs(tester, config):
    return tester.prepare_inputs(config)


def _task_inputs(task, inputs):
    return {key: inputs[key] for key in TASK_KEYS[task]}


def _reference_coattention(layer: DenseCoAttentionLayer, text, image, text_mask, image_mask):
    """The layer's equations written with explicit loops over examples, heads, words and regions."""
    k, h = layer.num_null_tokens, layer.num_heads
    d = text.shape[-1]
    dh = d // h
    text_out = torch.zeros_like(text)
    image_out = torch.zeros_like(image)
    maps = []
    for b in range(text.shape[0]):
        words = [layer.text_null_tokens[j] for j in range(k)] + [
            text[b, n] for n in range(text.shape[1]) if text_mask[b, n]
        ]
        regions = [layer.image_null_tokens[j] for j in range(k)] + [
            image[b, t] for t in range(image.shape[1]) if image_mask[b, t]
        ]
        proj_words = [layer.text_projection.weight @ w for w in words]
        proj_regions = [layer.image_projection.weight @ r for r in regions]
        n_real, t_real = len(words) - k, len(regions) - k
        w2r_sum = torch.zeros(n_real, len(regions))
        r2w_sum = torch.zeros(t_real, len(words))
        for head in range(h):
            sl = slice(head * dh, (head + 1) * dh)
            affinity = torch.zeros(len(words), len(regions))
            for i, pw in enumerate(proj_words):
                for j, pr in enumerate(proj_regions):
                    affinity[i, j] = (pw[sl] * pr[sl]).sum() / math.sqrt(dh)
            for n in range(n_real):
                row = affinity[k + n]
                w2r_sum[n] += torch.exp(row - row.max()) / torch.exp(row - row.max()).sum()
            for t in range(t_real):
                col = affinity[:, k + t]
                r2w_sum[t] += torch.exp(col - col.max()) / torch.exp(col - col.max()).sum()
        w2r, r2w = w2r_sum / h, r2w_sum / h
        maps.append((w2r, r2w))
        for n in range(n_real):
            image_hat = sum(w2r[n, j] * regions[j] for j in range(len(regions)))
            fused = layer.text_fusion.weight @ torch.cat([words[k + n], image_hat]) + layer.text_fusion.bias
            text_out[b, n] = words[k + n] + torch.relu(fused)
        for t in range(t_real):
            text_hat = sum(r2w[t, i] * words[i] for i in range(len(words)))
            fused = layer.image_fusion.weight @ torch.cat([regions[k + t], text_hat]) + layer.image_fusion.bias
            image_out[b, t] = regions[k + t] + torch.relu(fused)
    return text_out, image_out, maps


def test_coattention_layer_matches_bruteforce_reference(config, inputs):
    torch.manual_seed(0)
    layer = DenseCoAttentionLayer(config).eval()
    with torch.no_grad():
        for parameter in layer.parameters():
            parameter.normal_(0, 0.5)
    b, n, t, d = 3, inputs["input_ids"].shape[1], inputs["region_features"].shape[1], config.hidden_size
    text, image = torch.randn(b, n, d), torch.randn(b, t, d)
    text_mask, image_mask = inputs["attention_mask"].bool(), inputs["region_mask"].bool()
    with torch.no_grad():
        text_out, image_out, (w2r, r2w) = layer(text, image, text_mask, image_mask, output_attentions=True)
        ref_text, ref_image, ref_maps = _reference_coattention(layer, text, image, text_mask, image_mask)
    k = config.num_null_tokens
    for example in range(b):
        n_real, t_real = int(text_mask[example].sum()), int(image_mask[example].sum())
        torch.testing.assert_close(text_out[example, :n_real], ref_text[example, :n_real], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(image_out[example, :t_real], ref_image[example, :t_real], atol=1e-5, rtol=1e-5)
        ref_w2r, ref_r2w = ref_maps[example]
        torch.testing.assert_close(w2r[example, :n_real, : k + t_real], ref_w2r, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(r2w[example, :t_real, : k + n_real], ref_r2w, atol=1e-6, rtol=1e-5)
        # Padded regions and words receive no attention.
        assert float(w2r[example, :n_real, k + t_real :].abs().sum()) == 0.0
        assert float(r2w[example, :t_real, k + n_real :].abs().sum()) == 0.0


def test_summary_network_matches_hand_computation(config):
    torch.manual_seed(1)
    summary = SummaryNetwork(config).eval()
    features = torch.randn(2, 5, config.hidden_size)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]).bool()
    with torch.no_grad():
        vector, weights = summary(features, mask)
        scores = summary.scores(torch.relu(summary.hidden(features)))  # (B, L, G)
        expected_weights = torch.zeros(2, 5)
        for b in range(2):
            valid = mask[b]
            expected_weights[b, valid] = scores[b, valid].softmax(dim=0).mean(dim=-1)
        expected_vector = (expected_weights.unsqueeze(-1) * features).sum(1)
    torch.testing.assert_close(weights, expected_weights)
    torch.testing.assert_close(vector, expected_vector)
    assert torch.allclose(weights.sum(-1), torch.ones(2))


@pytest.mark.parametrize("task", ["vqa", "retrieval", "grounding"])
def test_padding_changes_no_unpadded_output(config, inputs, task):
    torch.manual_seed(0)
    model = HierarchicalVLForMultiTask(config).eval()
    base = _task_inputs(task, inputs)
    padded = dict(base)
    extra_words, extra_regions = 3, 4
    b = base["input_ids"].shape[0]
    padded["input_ids"] = torch.cat([base["input_ids"], torch.zeros(b, extra_words, dtype=torch.long)], 1)
    padded["attention_mask"] = torch.cat([base["attention_mask"], torch.zeros(b, extra_words, dtype=torch.long)], 1)
    padded["region_features"] = torch.cat(
        [base["region_features"], 100 * torch.randn(b, extra_regions, config.region_feature_dim)], 1
    )
    padded["region_mask"] = torch.cat([base["region_mask"], torch.zeros(b, extra_regions, dtype=torch.long)], 1)
    with torch.no_grad():
        out = model(task=task, output_hidden_states=True, **base)
        out_padded = model(task=task, output_hidden_states=True, **padded)
    t = base["region_features"].shape[1]
    if task == "grounding":
        torch.testing.assert_close(out_padded.logits[..., :t], out.logits)
    else:
        torch.testing.assert_close(out_padded.logits, out.logits, atol=1e-5, rtol=1e-5)
    for example in range(b):
        n_real = int(base["attention_mask"][example].sum())
        t_real = int(base["region_mask"][example].sum())
        torch.testing.assert_close(
            out_padded.text_hidden_states[-1][example, :n_real], out.text_hidden_states[-1][example, :n_real]
        )
        torch.testing.assert_close(
            out_padded.image_hidden_states[-1][example, :t_real],
            out.image_hidden_states[-1][example, :t_real],
        )


def test_each_task_runs_the_encoder_only_to_its_layer(config, inputs):
    model = HierarchicalVLForMultiTask(config).eval()
    calls = []
    for index, layer in enumerate(model.hierarchical_vl.encoder.layers):
        layer.register_forward_hook(lambda *args, index=index: calls.append(index))
    for task, layer in config.task_layers.items():
        calls.clear()
        with torch.no_grad():
            out = model(task=task, **_task_inputs(task, inputs), output_hidden_states=True)
        assert calls == list(range(layer))
        assert len(out.text_hidden_states) == layer + 1


def test_vqa_loss_is_soft_score_bce(config, inputs):
    model = HierarchicalVLForVisualQuestionAnswering(config).eval()
    labels = torch.zeros(3, config.num_answers)
    labels[0, 2], labels[1, 0], labels[1, 5], labels[2, 9] = 1.0, 0.3, 0.9, 0.6
    with torch.no_grad():
        out = model(**_task_inputs("vqa", inputs), labels=labels)
    p = torch.sigmoid(out.logits.double())
    y = labels.double()
    expected = -(y * torch.log(p) + (1 - y) * torch.log(1 - p)).sum() / 3
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_retrieval_loss_and_pair_scoring(config, inputs):
    model = HierarchicalVLForImageTextRetrieval(config).eval()
    labels = torch.tensor([1.0, 0.0, 1.0])
    with torch.no_grad():
        out = model(**_task_inputs("retrieval", inputs), labels=labels)
    p = torch.sigmoid(out.logits.double())
    expected = -(labels * torch.log(p) + (1 - labels) * torch.log(1 - p)).mean()
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)

    # Every (image, caption) combination scored in batches equals running the forward pass on that pair.
    text_inputs = {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]}
    image_inputs = {"region_features": inputs["region_features"], "region_mask": inputs["region_mask"]}
    image_index, text_index = torch.meshgrid(torch.arange(3), torch.arange(3), indexing="ij")
    scores = model.score_pairs(text_inputs, image_inputs, text_index.flatten(), image_index.flatten(), batch_size=4)
    for i in range(3):
        for c in range(3):
            with torch.no_grad():
                pair = model(
                    input_ids=inputs["input_ids"][c : c + 1],
                    attention_mask=inputs["attention_mask"][c : c + 1],
                    region_features=inputs["region_features"][i : i + 1],
                    region_mask=inputs["region_mask"][i : i + 1],
                )
            assert scores[i * 3 + c].item() == pytest.approx(pair.logits.item(), abs=1e-5)


def test_grounding_loss_counts_only_valid_pairs(config, inputs):
    model = HierarchicalVLForVisualGrounding(config).eval()
    t = inputs["region_features"].shape[1]
    labels = torch.zeros(3, 2, t)
    labels[0, 0, 1] = 1.0
    labels[2, 1, 0] = 1.0
    with torch.no_grad():
        out = model(**_task_inputs("grounding", inputs), labels=labels)
    valid = inputs["phrase_mask"].bool()[:, :, None] & inputs["region_mask"].bool()[:, None, :]
    logits = out.logits[valid].double()
    y = labels[valid].double()
    expected = F.binary_cross_entropy_with_logits(logits, y)
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert int(valid.sum()) == 3 * 2 * t - 2 * 3 - t + 0  # example 0 has 3 padded regions, example 1 one padded phrase
    # Padded regions can never be ranked first.
    assert (out.logits[0, :, t - 3 :] == torch.finfo(out.logits.dtype).min).all()


def test_grounding_phrase_vector_is_mean_of_span(config, inputs):
    model = HierarchicalVLForVisualGrounding(config).eval()
    decoder = model.grounding_decoder
    text = torch.randn(1, 4, config.hidden_size)
    image = torch.randn(1, 3, config.hidden_size)
    spans = torch.tensor([[[1, 3]]])
    with torch.no_grad():
        logits = decoder(
            text,
            image,
            torch.ones(1, 4, dtype=torch.bool),
            torch.ones(1, 3, dtype=torch.bool),
            phrase_spans=spans,
            phrase_mask=torch.ones(1, 1),
        )["logits"]
        phrase = text[0, 1:4].mean(0)
        expected = torch.stack([phrase @ decoder.bilinear.weight @ image[0, r] for r in range(3)])
    torch.testing.assert_close(logits[0, 0], expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("distribution", ["normal", "uniform"])
def test_initialisation(config, distribution):
    """Xavier weights of the configured distribution, zero biases, half the forget-gate bias in each LSTM bias."""
    config.initializer_distribution = distribution
    model = HierarchicalVLForMultiTask(config)
    lstm = model.hierarchical_vl.text_embeddings.lstm
    hidden = config.lstm_hidden_size
    for name, param in lstm.named_parameters():
        if name.startswith("bias"):
            expected = torch.zeros_like(param)
            expected[hidden : 2 * hidden] = config.lstm_forget_bias / 2
            assert torch.equal(param, expected), name
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            fan_in, fan_out = module.weight.shape[1], module.weight.shape[0]
            std = math.sqrt(2.0 / (fan_in + fan_out))
            if distribution == "uniform":
                assert module.weight.abs().max() <= math.sqrt(3.0) * std + 1e-6, name
            assert module.weight.std() > std / 4, name  # not left at zero
            if module.bias is not None:
                assert torch.all(module.bias == 0), name
    embeddings = model.hierarchical_vl.text_embeddings.word_embeddings
    assert torch.all(embeddings.weight[0] == 0) and not embeddings.weight.requires_grad
    for layer in model.hierarchical_vl.encoder.layers:
        assert layer.text_null_tokens.abs().sum() > 0 and layer.image_null_tokens.abs().sum() > 0


def test_save_and_load_round_trip(tmp_path, config, inputs):
    torch.manual_seed(3)
    model = HierarchicalVLForMultiTask(config).eval()
    model.save_pretrained(tmp_path)
    loaded = HierarchicalVLForMultiTask.from_pretrained(tmp_path).eval()
    for task in ("vqa", "retrieval", "grounding"):
        with torch.no_grad():
            expected = model(task=task, **_task_inputs(task, inputs)).logits
            actual = loaded(task=task, **_task_inputs(task, inputs)).logits
        # The same weights; kernels may differ in summation order for a freshly loaded LSTM (rounding only).
        torch.testing.assert_close(actual, expected, atol=1e-6, rtol=0)
    # Raw parameters (null tokens, learned LSTM states) survive the round trip.
    for (name, a), (_, b) in zip(model.named_parameters(), loaded.named_parameters()):
        assert torch.equal(a, b), name


def test_single_task_heads_load_out_of_a_multitask_checkpoint(tmp_path, config, inputs):
    torch.manual_seed(4)
    multi = HierarchicalVLForMultiTask(config).eval()
    with torch.no_grad():  # make the LSTM states non-trivial so a missing key would show
        multi.hierarchical_vl.text_embeddings.initial_hidden.normal_()
    multi.save_pretrained(tmp_path)
    saved = set(load_file(str(tmp_path / "model.safetensors")))
    assert {name for name, _ in multi.named_parameters()} <= saved  # every encoder and decoder weight is saved
    head_classes = {
        "vqa": HierarchicalVLForVisualQuestionAnswering,
        "retrieval": HierarchicalVLForImageTextRetrieval,
        "grounding": HierarchicalVLForVisualGrounding,
    }
    for task, head_class in head_classes.items():
        head = head_class.from_pretrained(tmp_path).eval()
        multi_parameters = dict(multi.named_parameters())
        for name, parameter in head.named_parameters():  # encoder and decoder weights loaded exactly
            assert torch.equal(parameter, multi_parameters[name]), name
        with torch.no_grad():
            expected = multi(task=task, **_task_inputs(task, inputs), output_hidden_states=True)
            actual = head(**_task_inputs(task, inputs), output_hidden_states=True)
        for a, b in zip(expected.text_hidden_states, actual.text_hidden_states):
            torch.testing.assert_close(b, a, atol=1e-6, rtol=0)
        torch.testing.assert_close(actual.logits, expected.logits, atol=1e-6, rtol=0)
    encoder = HierarchicalVLModel.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        states = encoder(**_task_inputs("vqa", inputs))
        expected = multi(task="vqa", **_task_inputs("vqa", inputs), output_hidden_states=True)
    torch.testing.assert_close(states.image_last_hidden_state, expected.image_hidden_states[-1], atol=1e-6, rtol=0)


def test_attention_maps_are_returned_per_layer(config, inputs):
    model = HierarchicalVLModel(config).eval()
    with torch.no_grad():
        out = model(**_task_inputs("vqa", inputs), output_attentions=True, num_layers=2)
    assert len(out.attentions) == 2
    w2r, r2w = out.attentions[0]
    k = config.num_null_tokens
    n, t = inputs["input_ids"].shape[1], inputs["region_features"].shape[1]
    assert w2r.shape == (3, n, k + t) and r2w.shape == (3, t, k + n)
    torch.testing.assert_close(w2r.sum(-1), torch.ones(3, n))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda x: x.update(region_features=torch.randn(3, 6, 7)), "width 7"),
        (lambda x: x.update(attention_mask=torch.zeros_like(x["attention_mask"])), "empty text"),
        (
            lambda x: x.update(region_features=x["region_features"][:2], region_mask=x["region_mask"][:2]),
            "batch size",
        ),
        (lambda x: x["region_mask"].__setitem__(1, 0), "no valid region"),
        (lambda x: x.update(attention_mask=x["attention_mask"][:, :3]), "does not match"),
        (lambda x: x["attention_mask"].__setitem__((0, 0), 0), "right-padded"),
        (lambda x: x["input_ids"].__setitem__((0, 0), 10_000), "vocab_size"),
    ],
)
def test_malformed_inputs_raise_clear_errors(config, inputs, change, message):
    model = HierarchicalVLForVisualQuestionAnswering(config).eval()
    bad = _task_inputs("vqa", inputs)
    bad = {key: value.clone() for key, value in bad.items()}
    change(bad)
    with pytest.raises(ValueError, match=message):
        model(**bad)


def test_grounding_rejects_spans_outside_the_text(config, inputs):
    model = HierarchicalVLForVisualGrounding(config).eval()
    bad = _task_inputs("grounding", inputs)
    bad["phrase_spans"] = bad["phrase_spans"].clone()
    bad["phrase_spans"][2, 0] = torch.tensor([1, 50])
    with pytest.raises(ValueError, match="phrase 0 of example 2"):
        model(**bad)


def test_multitask_rejects_unknown_task(config, inputs):
    model = HierarchicalVLForMultiTask(config)
    with pytest.raises(ValueError, match="unknown task 'captioning'"):
        model(**_task_inputs("vqa", inputs), task="captioning")
    with pytest.raises(TypeError, match="task"):
        model(**_task_inputs("vqa", inputs))  # the task is a required keyword


def test_box_embedding_extension_changes_outputs(inputs):
    config = HierarchicalVLConfig.from_preset("tiny", use_box_embedding=True)
    model = HierarchicalVLForVisualQuestionAnswering(config).eval()
    base = _task_inputs("vqa", inputs)
    with torch.no_grad():
        a = model(**base, region_boxes=inputs["region_boxes"]).logits
        b = model(**base, region_boxes=inputs["region_boxes"].flip(-1)).logits
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="region_boxes"):
        model(**base)


def test_glove_matrix_can_be_loaded(config):
    model = HierarchicalVLModel(config)
    matrix = torch.randn(config.vocab_size, config.word_embedding_dim)
    model.load_glove_embeddings(matrix)
    assert torch.equal(model.get_input_embeddings().weight, matrix)
    with pytest.raises(ValueError, match="shape"):
        model.load_glove_embeddings(matrix[:, :3])


def test_forward_task_runs_heads_and_the_multitask_model_alike(config, inputs):
    torch.manual_seed(5)
    multi = HierarchicalVLForMultiTask(config).eval()
    head = HierarchicalVLForVisualQuestionAnswering(config).eval()
    head.load_state_dict(multi.state_dict(), strict=False)
    assert multi.tasks == ["grounding", "retrieval", "vqa"] and head.tasks == ["vqa"]
    with head.inference():
        assert not head.training and not torch.is_grad_enabled()
        a = head.forward_task("vqa", **_task_inputs("vqa", inputs)).logits
        b = multi.forward_task("vqa", **_task_inputs("vqa", inputs)).logits
    torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="has no 'grounding' decoder"):
        head.forward_task("grounding", **_task_inputs("grounding", inputs))
    head.train()
    with head.inference():
        pass
    assert head.training  # the previous mode is restored
