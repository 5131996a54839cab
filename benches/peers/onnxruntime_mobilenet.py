#!/usr/bin/env python3
"""The same MobileNet V1 as `mobilenet bench` (benches/peers/pytorch_mobilenet.py's network),
run by onnxruntime on the CPU (threads = cores): float32, or int8 as a user of onnxruntime's
post-training quantization would make it (`quantize_static`, QDQ form, weights int8 per
channel, activations int8 per tensor, calibrated with min/max on `--calibration` batches).

Prints one JSON object with the fields `mobilenet bench --json` prints, so
benches/compare.sh can put it beside ours. Needs `pip install torch onnx onnxruntime`.

    python3 benches/peers/onnxruntime_mobilenet.py --precision int8 --batch 8 --resolution 224
"""
import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings

import numpy as np
import onnxruntime as ort
import torch
from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                      quantize_static)
from onnxruntime.quantization.shape_inference import quant_pre_process

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pytorch_mobilenet import mobilenet_v1, mult_adds  # noqa: E402


class RandomImages(CalibrationDataReader):
    """Calibration batches of uniform [-1, 1] images: the speed of the quantized model does
    not depend on which images set its ranges."""

    def __init__(self, batches, batch, resolution):
        rng = np.random.default_rng(0)
        self.batches = iter([
            {"input": rng.uniform(-1, 1, (batch, 3, resolution, resolution)).astype(np.float32)}
            for _ in range(batches)
        ])

    def get_next(self):
        return next(self.batches, None)


def export(model, resolution, path):
    x = torch.rand(1, 3, resolution, resolution)
    # The TorchScript exporter: the torch.export one needs onnxscript, which this peer does
    # not otherwise need. Its deprecation warning would bury compare.sh's table.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, x, path, input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}}, opset_version=13, dynamo=False)


def session(a, workdir):
    torch.manual_seed(0)
    model = mobilenet_v1(a.alpha).eval()
    f32 = os.path.join(workdir, "mobilenet_f32.onnx")
    export(model, a.resolution, f32)
    path = f32
    if a.precision == "int8":
        # onnxruntime's recommended pre-processing (shape inference, constants folded into
        # initializers, so every convolution's bias is quantized too), then quantize_static.
        # Its advice goes to the root logger, once per run: kept to errors.
        logging.getLogger().setLevel(logging.ERROR)
        prepared = os.path.join(workdir, "mobilenet_f32_prepared.onnx")
        quant_pre_process(f32, prepared)
        path = os.path.join(workdir, "mobilenet_int8.onnx")
        quantize_static(prepared, path, RandomImages(a.calibration, 1, a.resolution),
                        quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    options = ort.SessionOptions()
    options.intra_op_num_threads = os.cpu_count() or 1
    return model, ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--precision", choices=["f32", "int8"], default="int8")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--alpha", type=float, default=1.0)
    p.add_argument("--calibration", type=int, default=16, help="calibration images")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=10)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        model, sess = session(a, workdir)
        x = np.random.default_rng(1).uniform(
            -1, 1, (a.batch, 3, a.resolution, a.resolution)).astype(np.float32)
        for _ in range(a.warmup):
            sess.run(None, {"input": x})
        times = []
        for _ in range(a.iters):
            start = time.perf_counter()
            sess.run(None, {"input": x})
            times.append((time.perf_counter() - start) * 1e3)
    ms = statistics.median(times)
    flops = 2 * mult_adds(model, a.resolution) * a.batch
    print(json.dumps({
        "mode": "infer", "precision": a.precision, "batch": a.batch,
        "resolution": a.resolution, "alpha": a.alpha,
        "ms_per_batch": ms, "images_per_sec": a.batch / (ms / 1e3),
        "gflops": flops / (ms / 1e3) / 1e9,
        "adapter": f"onnxruntime {ort.__version__} {a.precision} cpu ({os.cpu_count()} threads)",
    }))


if __name__ == "__main__":
    main()
