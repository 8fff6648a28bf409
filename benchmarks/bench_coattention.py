"""Training-step throughput of the paper-size model: the package's co-attention layer against a plain reference.

The reference writes the paper's equations directly in fp32: one projection per head, a Python loop over heads,
each head's softmaxes and attended features computed separately and then averaged, null tokens projected for
every example. Both variants share all weights, and the script checks that they compute the same loss before
timing them. A step is forward + backward + Adam on the VQA head (all five layers, 3129 answers).

    python benchmarks/bench_coattention.py                      # CPU, batch 32, 36 regions
    python benchmarks/bench_coattention.py --device cuda --batch-size 256 --max-regions 100 --bf16
"""

from __future__ import annotations

import argparse
import copy
import math
import platform
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from hierarchical_vl import HierarchicalVLConfig, HierarchicalVLForVisualQuestionAnswering
from hierarchical_vl.modeling_hierarchical_vl import DenseCoAttentionLayer


class ReferenceDenseCoAttentionLayer(nn.Module):
    """The dense co-attention equations written plainly, head by head, in the same parameterisation."""

    def __init__(self, layer: DenseCoAttentionLayer):
        super().__init__()
        self.layer = layer

    def forward(self, text, image, text_mask, image_mask, projections=None, output_attentions=False):
        layer = self.layer
        batch_size, _, d = text.shape
        k, h = layer.num_null_tokens, layer.num_heads
        dh = d // h
        text_ext = torch.cat([layer.text_null_tokens.expand(batch_size, -1, -1), text], 1)  # (B, K+N, d)
        image_ext = torch.cat([layer.image_null_tokens.expand(batch_size, -1, -1), image], 1)  # (B, K+T, d)
        ones = text_mask.new_ones(batch_size, k)
        text_valid = torch.cat([ones, text_mask], 1)
        image_valid = torch.cat([ones, image_mask], 1)
        image_hats, text_hats = [], []
        for head in range(h):
            rows = slice(head * dh, (head + 1) * dh)
            q = F.linear(text_ext, layer.text_projection.weight[rows])  # (B, K+N, dh)
            key = F.linear(image_ext, layer.image_projection.weight[rows])  # (B, K+T, dh)
            affinity = q @ key.transpose(1, 2) / math.sqrt(dh)  # (B, K+N, K+T)
            over_regions = affinity.masked_fill(~image_valid[:, None, :], -1e9).softmax(-1)
            over_words = affinity.transpose(1, 2).masked_fill(~text_valid[:, None, :], -1e9).softmax(-1)
            image_hats.append(over_regions[:, k:] @ image_ext)  # (B, N, d)
            text_hats.append(over_words[:, k:] @ text_ext)  # (B, T, d)
        image_hat = torch.stack(image_hats).mean(0)
        text_hat = torch.stack(text_hats).mean(0)
        text_out = text + layer.dropout(F.relu(layer.text_fusion(torch.cat([text, image_hat], -1))))
        image_out = image + layer.dropout(F.relu(layer.image_fusion(torch.cat([image, text_hat], -1))))
        return text_out, image_out, None


def _inputs(config, batch_size, num_words, max_regions, min_regions, device, seed=0):
    generator = torch.Generator().manual_seed(seed)
    word_lengths = torch.randint(4, num_words + 1, (batch_size,), generator=generator)
    region_lengths = torch.randint(min_regions, max_regions + 1, (batch_size,), generator=generator)
    attention_mask = (torch.arange(num_words) < word_lengths[:, None]).long()
    region_mask = (torch.arange(max_regions) < region_lengths[:, None]).long()
    labels = torch.zeros(batch_size, config.num_answers)
    labels[torch.arange(batch_size), torch.randint(0, config.num_answers, (batch_size,), generator=generator)] = 1.0
    batch = {
        "input_ids": torch.randint(2, config.vocab_size, (batch_size, num_words), generator=generator) * attention_mask,
        "attention_mask": attention_mask,
        "region_features": torch.randn(batch_size, max_regions, config.region_feature_dim, generator=generator).half(),
        "region_mask": region_mask,
        "labels": labels,
    }
    return {key: value.to(device) for key, value in batch.items()}


def _step_timer(model, batch, bf16, device):
    """A closure that runs one training step and returns its wall time."""
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3, betas=(0.9, 0.99))

    def step() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    return step


def _interleaved_medians(steps_a, steps_b, steps, warmup):
    """Median step times of two variants run alternately, so that load on the machine hits both alike."""
    times_a, times_b = [], []
    for index in range(warmup + steps):
        a, b = steps_a(), steps_b()
        if index >= warmup:
            times_a.append(a)
            times_b.append(b)
    return statistics.median(times_a), statistics.median(times_b)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-words", type=int, default=14)
    parser.add_argument("--max-regions", type=int, default=36)
    parser.add_argument("--min-regions", type=int, default=None, help="fewest valid regions (default: all valid)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (GPU, or CPUs with bf16 instructions)")
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    config = HierarchicalVLConfig.from_preset(args.preset)
    model = HierarchicalVLForVisualQuestionAnswering(config).to(device).train()
    reference = copy.deepcopy(model)
    layers = reference.hierarchical_vl.encoder.layers
    for index in range(len(layers)):
        layers[index] = ReferenceDenseCoAttentionLayer(layers[index])
    batch = _inputs(
        config,
        args.batch_size,
        args.num_words,
        args.max_regions,
        args.min_regions or args.max_regions,
        device,
    )

    model.eval()
    reference.eval()
    with torch.no_grad():
        fast_loss, reference_loss = model(**batch).loss.item(), reference(**batch).loss.item()
    assert abs(fast_loss - reference_loss) <= 1e-4 * max(1.0, abs(reference_loss)), (
        fast_loss,
        reference_loss,
    )
    model.train()
    reference.train()

    reference_time, fast_time = _interleaved_medians(
        _step_timer(reference, batch, args.bf16, device),
        _step_timer(model, batch, args.bf16, device),
        args.steps,
        args.warmup,
    )
    parameters = sum(p.numel() for p in model.parameters())
    print(
        f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}"
    )
    print(
        f"model: preset={args.preset} d={config.hidden_size} layers={config.num_layers} answers={config.num_answers} "
        f"params={parameters / 1e6:.1f}M; batch={args.batch_size} words={args.num_words} regions<={args.max_regions} "
        f"bf16={args.bf16} device={device}"
    )
    print(f"losses agree: package {fast_loss:.6f} reference {reference_loss:.6f}")
    print(f"reference layer: {reference_time * 1000:8.1f} ms/step  {args.batch_size / reference_time:8.1f} samples/s")
    print(f"package layer:   {fast_time * 1000:8.1f} ms/step  {args.batch_size / fast_time:8.1f} samples/s")
    print(f"speed-up (reference time / package time): {reference_time / fast_time:.2f}x")


if __name__ == "__main__":
    main()
