"""The continual tasks for the pretrained CLIP stand-in: every ``unseen_*`` class is a
colour-shape pair pretraining never showed (so the sequence teaches something new), no two
tasks share a class, and the held-out retention dataset holds only pretraining pairs (its
zero-shot accuracy is what the stand-in knew before the sequence)."""

from lorakit.data.captions import COMBOS, classname
from lorakit.vision.clip.continual import GENERATED, HELDOUT


def test_unseen_tasks_use_only_pairs_pretraining_never_showed():
    unseen = {classname(p) for p in COMBOS.unseen()}
    seen = {classname(p) for p in COMBOS.pretrain}
    tasks = {k: v for k, v in GENERATED.items() if k.startswith("unseen_")}
    assert len(tasks) >= 3
    classes = [c for names, _ in tasks.values() for c in names]
    assert all(c in unseen for c in classes), [c for c in classes if c not in unseen]
    assert len(set(classes)) == len(classes)  # disjoint tasks
    assert all(c in seen for c in HELDOUT[0])
