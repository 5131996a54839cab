#!/usr/bin/env python3
"""Write assets/imagenet_classes.txt: the 1000 ImageNet-1k class names, one per
line, in the standard class-index order (line 0 = index 0 = "tench, Tinca tinca").

Source: the `timm` package (PyPI), which ships
  timm/data/_info/imagenet_synsets.txt          1000 WordNet ids in class-index order
  timm/data/_info/imagenet_synset_to_lemma.txt  "<wnid>\\t<lemmas>" for all of ImageNet-22k
Each output line is the lemma text for the synset at that index, verbatim.

Usage (from the repository root):
  python3 -m venv /work/pyenv && /work/pyenv/bin/pip install timm
  /work/pyenv/bin/python scripts/make_imagenet_classes.py
Produced with timm 1.0.31.
"""
import os
import sys
from importlib import resources

import timm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "assets", "imagenet_classes.txt")


def read_info(name):
    return resources.files("timm.data").joinpath("_info", name).read_text(encoding="utf-8")


def main():
    synsets = read_info("imagenet_synsets.txt").splitlines()
    lemmas = {}
    for line in read_info("imagenet_synset_to_lemma.txt").splitlines():
        wnid, text = line.split("\t", 1)
        lemmas[wnid] = text.strip()
    assert len(synsets) == 1000, len(synsets)
    assert len(set(synsets)) == 1000
    names = [lemmas[s] for s in synsets]
    assert all(n and "\n" not in n for n in names)
    assert names[0] == "tench, Tinca tinca", names[0]
    assert names[1] == "goldfish, Carassius auratus", names[1]
    assert names[999].startswith("toilet tissue"), names[999]

    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(names) + "\n")
    print(f"timm {timm.__version__}: wrote {len(names)} names to {os.path.relpath(OUT, ROOT)}")
    for i in (0, 1, 2, 999):
        print(f"  {i}: {names[i]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
