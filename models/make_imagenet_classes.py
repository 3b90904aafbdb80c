"""Write models/imagenet_classes.txt from the ImageNet-1k class files shipped in timm's wheel.

The 1000 ImageNet-1k classes in index order are the WordNet ids of
``timm/data/_info/imagenet_synsets.txt`` (sorted, the standard order of every
ImageNet-1k classifier); their names are the WordNet lemmas of
``timm/data/_info/imagenet_synset_to_lemma.txt``. We keep the first
comma-separated synonym, with the overrides below so that every name is unique
and the cat classes read naturally.

Usage (timm itself is not installed, only its wheel is read)::

    pip download --no-deps timm==1.0.31 -d /tmp/timm
    python models/make_imagenet_classes.py /tmp/timm/timm-1.0.31-py3-none-any.whl
"""

from __future__ import annotations

import csv
import sys
import zipfile
from pathlib import Path

SYNSETS = "timm/data/_info/imagenet_synsets.txt"
LEMMAS = "timm/data/_info/imagenet_synset_to_lemma.txt"

# WordNet id -> name, where the first synonym is ambiguous or too terse.
OVERRIDES = {
    "n02012849": "crane (bird)",  # "crane" twice: the bird (134) and the machine (517)
    "n03126707": "crane (machine)",
    "n03710637": "maillot",  # "maillot" twice: 638 and 639 "maillot, tank suit"
    "n03710721": "tank suit",
    "n02123045": "tabby cat",  # "tabby, tabby cat": keep the word "cat" in the name
}

OUT = Path(__file__).with_name("imagenet_classes.txt")


def class_names(wheel: str | Path) -> list[str]:
    with zipfile.ZipFile(wheel) as z:
        synsets = z.read(SYNSETS).decode("utf-8").split()
        lemmas = dict(csv.reader(z.read(LEMMAS).decode("utf-8").splitlines(), delimiter="\t"))
    if len(synsets) != 1000 or synsets != sorted(synsets):
        raise SystemExit(f"{SYNSETS}: expected 1000 sorted WordNet ids, got {len(synsets)}")
    names = [OVERRIDES.get(s, lemmas[s].split(",")[0].strip()) for s in synsets]
    if len(set(names)) != 1000:
        raise SystemExit("class names are not unique; extend OVERRIDES")
    return names


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        raise SystemExit(__doc__)
    names = class_names(argv[1])
    OUT.write_text("\n".join(names) + "\n", encoding="utf-8")
    print(f"wrote {OUT} ({len(names)} classes)")


if __name__ == "__main__":
    main(sys.argv)
