#!/usr/bin/env python3
"""Write an ImageNet-like folder of JPEG files to benchmark data loaders on.

A loader's speed depends mostly on how big the JPEG files are and how many pixels
they hold, so this imitates ImageNet's training photos in both: mostly 500x375 and
375x500, some 500x333 / 333x500 / 400x300, a few larger (640x480, 800x600), saved at
quality 90. The content is synthetic but photo-like enough for JPEG to compress it
about as well as a photo: smooth random colour gradients, a few filled ellipses and
rectangles, texture at two scales and per-pixel sensor-like noise, lightly blurred
(roughly 110 KB for a 500x375 file, as ImageNet averages).

Layout: OUT_DIR/class_000/img_00000.JPEG, ... (the ImageFolder layout). Every image
comes from its own generator seeded by (seed, class, index), so the output does not
depend on --jobs. Needs numpy and Pillow.

    python3 benches/make_imagenet_like.py /tmp/imagenet_like --classes 10 --per-class 100
"""
import argparse
import multiprocessing
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

# (width, height) and how often each occurs, roughly as in ImageNet's training set.
SIZES = [(500, 375), (375, 500), (500, 333), (333, 500), (400, 300), (640, 480), (800, 600)]
WEIGHTS = [0.45, 0.22, 0.12, 0.05, 0.08, 0.05, 0.03]


def smooth_field(rng, width, height, cells, channels):
    """Random values on a coarse grid of `cells` per side, bicubically upsampled."""
    gw, gh = max(2, cells * width // max(width, height)), max(2, cells * height // max(width, height))
    coarse = rng.uniform(0, 255, (gh, gw, channels)).astype(np.uint8)
    mode = "RGB" if channels == 3 else "L"
    img = Image.fromarray(coarse if channels == 3 else coarse[:, :, 0], mode)
    out = np.asarray(img.resize((width, height), Image.BICUBIC), np.float32)
    return out if channels == 3 else out[:, :, None]


def make_image(rng, width, height):
    """One photo-like RGB image of the given size."""
    base = smooth_field(rng, width, height, int(rng.integers(3, 7)), 3)
    img = Image.fromarray(base.astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(3, 9))):
        x0, y0 = rng.uniform(-0.2, 1.0) * width, rng.uniform(-0.2, 1.0) * height
        x1, y1 = x0 + rng.uniform(0.1, 0.6) * width, y0 + rng.uniform(0.1, 0.6) * height
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape([x0, y0, x1, y1], fill=colour)
    pixels = np.asarray(img, np.float32)
    # Texture at two scales (foliage, fur, fabric), mostly in brightness as in photos:
    # an 8-pixel and a 3-pixel pattern, the latter slightly tinted, its strength varying
    # smoothly across the picture from flat (sky, walls) to busy.
    coarse = smooth_field(rng, width, height, max(width, height) // 8, 1) - 127.5
    fine = smooth_field(rng, width, height, max(width, height) // 3, 1) - 127.5
    tint = smooth_field(rng, width, height, max(width, height) // 3, 3) - 127.5
    busy = smooth_field(rng, width, height, 4, 1) / 255 * rng.uniform(2.2, 3.8)
    pixels += coarse * rng.uniform(0.2, 0.5) + (fine + tint * 0.2) * busy
    # Sensor-like noise, partly smoothed by the blur below, as a camera's demosaicing does.
    pixels += rng.standard_normal((height, width, 3), np.float32) * rng.uniform(8.0, 14.0)
    img = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    return img.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 0.6)))


def write_one(task):
    """Generate and save one file; returns its size in bytes."""
    out_dir, seed, quality, cls, idx = task
    rng = np.random.default_rng([seed, cls, idx])
    width, height = SIZES[rng.choice(len(SIZES), p=WEIGHTS)]
    path = os.path.join(out_dir, f"class_{cls:03d}", f"img_{idx:05d}.JPEG")
    make_image(rng, width, height).save(path, "JPEG", quality=quality)
    return os.path.getsize(path)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out_dir")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--per-class", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quality", type=int, default=90)
    p.add_argument("--jobs", type=int, default=os.cpu_count(), help="worker processes (default: all cores)")
    args = p.parse_args()

    for cls in range(args.classes):
        os.makedirs(os.path.join(args.out_dir, f"class_{cls:03d}"), exist_ok=True)
    tasks = [
        (args.out_dir, args.seed, args.quality, cls, idx)
        for cls in range(args.classes)
        for idx in range(args.per_class)
    ]
    if args.jobs > 1:
        with multiprocessing.Pool(args.jobs) as pool:
            sizes = pool.map(write_one, tasks, chunksize=16)
    else:
        sizes = [write_one(t) for t in tasks]
    mean_kb = sum(sizes) / max(1, len(sizes)) / 1000
    print(f"wrote {len(sizes)} files in {args.classes} classes to {args.out_dir}, mean {mean_kb:.1f} KB")


if __name__ == "__main__":
    main()
