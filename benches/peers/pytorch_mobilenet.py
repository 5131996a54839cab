#!/usr/bin/env python3
"""The same MobileNet V1 as `mobilenet bench` (paper preset: ReLU, batch norm, 13 blocks;
1000 classes, 3 channels and a stride-2 stem unless told otherwise), timed in PyTorch eager mode on the CPU (threads = cores) or CUDA.

Prints one JSON object with the fields `mobilenet bench --json` prints, so
benches/compare.sh can put both side by side. Needs `pip install torch`.

    python3 benches/peers/pytorch_mobilenet.py --mode infer --batch 8 --resolution 224
"""
import argparse
import json
import os
import statistics
import time

import torch
from torch import nn

BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [
    (1024, 2),
    (1024, 1),
]


def conv_bn(cin, cout, kernel, stride, groups=1):
    return [
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]


def mobilenet_v1(alpha=1.0, classes=1000, in_channels=3, stem_stride=2):
    width = lambda c: max(1, int(c * alpha))
    layers = conv_bn(in_channels, width(32), 3, stem_stride)
    cin = width(32)
    for cout, stride in BLOCKS:
        layers += conv_bn(cin, cin, 3, stride, groups=cin)
        layers += conv_bn(cin, width(cout), 1, 1)
        cin = width(cout)
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, classes))


def mult_adds(model, resolution):
    """Convolutions and the classifier, as the paper (and `mobilenet summary`) count them."""
    total, size = 0, resolution
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            size = (size + 2 * m.padding[0] - m.kernel_size[0]) // m.stride[0] + 1
            total += size * size * m.out_channels * (m.in_channels // m.groups) * m.kernel_size[0] ** 2
        elif isinstance(m, nn.Linear):
            total += m.in_features * m.out_features
    return total


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mode", choices=["infer", "train"], default="infer")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--alpha", type=float, default=1.0)
    # The shape of `mobilenet train`'s default job: --in-channels 1 --stem-stride 1 --classes 10.
    p.add_argument("--in-channels", type=int, default=3)
    p.add_argument("--stem-stride", type=int, default=2)
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = p.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(0)
    device = torch.device(a.device)
    model = mobilenet_v1(a.alpha, a.classes, a.in_channels, a.stem_stride).to(device)
    x = torch.rand(a.batch, a.in_channels, a.resolution, a.resolution, device=device) * 2 - 1
    labels = torch.randint(0, a.classes, (a.batch,), device=device)
    # The paper's optimizer: RMSProp, decay 0.9, momentum 0.9, epsilon 1.0.
    optim = torch.optim.RMSprop(model.parameters(), lr=1e-3, alpha=0.9, momentum=0.9, eps=1.0)
    loss_fn = nn.CrossEntropyLoss()

    def step():
        if a.mode == "infer":
            with torch.inference_mode():
                model(x)
        else:
            optim.zero_grad(set_to_none=True)
            loss_fn(model(x), labels).backward()
            optim.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    model.train(a.mode == "train")
    for _ in range(a.warmup):
        step()
    times = []
    for _ in range(a.iters):
        start = time.perf_counter()
        step()
        times.append((time.perf_counter() - start) * 1e3)
    ms = statistics.median(times)
    passes = 3.0 if a.mode == "train" else 1.0
    flops = 2 * passes * mult_adds(model, a.resolution) * a.batch
    print(json.dumps({
        "mode": a.mode, "batch": a.batch, "resolution": a.resolution, "alpha": a.alpha,
        "ms_per_batch": ms, "images_per_sec": a.batch / (ms / 1e3),
        "gflops": flops / (ms / 1e3) / 1e9,
        "adapter": f"PyTorch {torch.__version__} {device.type}"
                   + (f" ({torch.get_num_threads()} threads)" if device.type == "cpu" else ""),
    }))


if __name__ == "__main__":
    main()
