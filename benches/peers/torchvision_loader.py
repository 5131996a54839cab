#!/usr/bin/env python3
"""The torchvision counterpart of our data loader benchmark: ImageFolder + DataLoader.

Decodes and augments the class folder DIR as a torchvision training (or evaluation)
pipeline would, and prints one JSON line:
  {"loader", "transform", "workers", "batch", "resolution", "images", "seconds", "images_per_sec"}
Train: RandomResizedCrop(R, scale 0.08..1, ratio 3/4..4/3, bilinear), horizontal flip,
ToTensor, Normalize(0.5, 0.5); shuffled. Eval (--eval): Resize(floor(R / crop_pct),
bicubic), CenterCrop(R), ToTensor, Normalize(0.5, 0.5); in file order.

--warmup batches are fetched untimed first and the clock starts when they have
arrived, so the DataLoader's worker start-up (process spawn, imports) is not timed.
Nothing consumes the batches, so the workers are never ahead of the clock by more
than the batch each is decoding. --batches times that many batches after the warmup
(default: the rest of the epoch).

The main process runs torch with one thread (torch.set_num_threads(1)) and every
DataLoader worker is one process with one thread, so --workers N uses about N cores
for decoding (--workers 0 decodes in the main process, one core): the comparison
counts decoding cores fairly. Needs `pip install torch torchvision`.

    python3 benches/make_imagenet_like.py /tmp/imagenet_like --classes 4 --per-class 100
    python3 benches/peers/torchvision_loader.py --data /tmp/imagenet_like --workers 2
"""
import argparse
import itertools
import json
import math
import time

import PIL
import torch
import torchvision
from torchvision import datasets, transforms

MEAN = STD = (0.5, 0.5, 0.5)


def build_transform(resolution, evaluate, crop_pct):
    if evaluate:
        steps = [
            transforms.Resize(math.floor(resolution / crop_pct), interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.CenterCrop(resolution),
        ]
    else:
        steps = [
            transforms.RandomResizedCrop(
                resolution,
                scale=(0.08, 1.0),
                ratio=(3 / 4, 4 / 3),
                interpolation=transforms.InterpolationMode.BILINEAR,
            ),
            transforms.RandomHorizontalFlip(),
        ]
    return transforms.Compose(steps + [transforms.ToTensor(), transforms.Normalize(MEAN, STD)])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="class folder (DIR/class/image)")
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--workers", type=int, default=1, help="DataLoader worker processes (0: main process)")
    p.add_argument("--eval", action="store_true", help="evaluation transform instead of training augmentation")
    p.add_argument("--crop-pct", type=float, default=0.875, help="eval: resize to floor(resolution / crop_pct)")
    p.add_argument("--batches", type=int, default=None, help="batches to time (default: the rest of the epoch)")
    p.add_argument("--warmup", type=int, default=2, help="untimed batches first")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    dataset = datasets.ImageFolder(args.data, build_transform(args.resolution, args.eval, args.crop_pct))
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=args.batch,
        shuffle=not args.eval,
        num_workers=args.workers,
        persistent_workers=False,
        pin_memory=False,
    )
    batches = iter(loader)
    for _ in itertools.islice(batches, args.warmup):
        pass
    images = 0
    start = time.perf_counter()
    for inputs, _ in itertools.islice(batches, args.batches):
        images += inputs.shape[0]
    seconds = time.perf_counter() - start
    if images == 0:
        raise SystemExit(f"no batches left to time after {args.warmup} warmup batches; use more images or --warmup 0")
    print(
        json.dumps(
            {
                "loader": f"torchvision {torchvision.__version__} (PIL {PIL.__version__})",
                "transform": "eval" if args.eval else "train",
                "workers": args.workers,
                "batch": args.batch,
                "resolution": args.resolution,
                "images": images,
                "seconds": round(seconds, 4),
                "images_per_sec": round(images / seconds, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
