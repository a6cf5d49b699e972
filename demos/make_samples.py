"""Write the sample inputs the README's commands use into demos/samples/ (committed; this
script shows where they come from and remakes them):

    .venv/bin/python demos/make_samples.py

- ``scene.png`` + ``scene_gt.png`` + ``scene_scribble.png``: a generated camouflage scene
  (128 px) with its ground truth (0/255) and scribble (0 none, 1 object, 2 background),
  the layout of one sample of a COD dataset (``Imgs/``, ``GT/``, ``Scribble/``).
- ``red_circle.png``: a generated few-shot shapes image, 32 px like ``demos/clip.yaml``'s data.
- ``triangle.png``: a generated shift-task image in the ID "photo" style (``demos/ood.yaml``).
- ``child.wav``: a child-like espeak-ng voice (16 kHz mono) and ``child.txt`` its text.
"""

from __future__ import annotations

import random
import shutil
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image

from lorakit.data import shift
from lorakit.data.camouflage import make_scribble, render_scene
from lorakit.data.fewshot import ShapesSpec, generate_shapes_dataset
from lorakit.data.speech import CorpusStyle, speak

OUT = Path(__file__).resolve().parent / "samples"
SENTENCE = "The teacher found a red ball today."


def main() -> None:
    OUT.mkdir(exist_ok=True)
    rng = np.random.default_rng(3)
    image, mask = render_scene(rng, 128, 0.5)
    Image.fromarray(image).save(OUT / "scene.png")
    Image.fromarray(mask.astype(np.uint8) * 255).save(OUT / "scene_gt.png")
    Image.fromarray(make_scribble(mask, rng)).save(OUT / "scene_scribble.png")
    with tempfile.TemporaryDirectory() as tmp:  # the generator's own recipe, another seed
        spec = ShapesSpec(["red circle", "green square"], 1, 1, size=32, seed=11)
        shutil.copy(
            Path(generate_shapes_dataset(tmp, spec)) / "test/red_circle/0000.png",
            OUT / "red_circle.png",
        )
    tri = shift.render_one("triangle", shift.ID_STYLE, 32, np.random.default_rng(2))
    Image.fromarray(tri).save(OUT / "triangle.png")
    wave, _voice = speak(SENTENCE, CorpusStyle().child, random.Random(0))
    sf.write(OUT / "child.wav", (wave.numpy() * 32767).astype(np.int16), 16000)
    (OUT / "child.txt").write_text(SENTENCE + "\n")
    for p in sorted(OUT.iterdir()):
        print(f"{p.relative_to(OUT.parent.parent)}\t{p.stat().st_size} bytes")


if __name__ == "__main__":
    main()
