"""DRS-LoRA (``core/methods/drs_lora.py``) pinned where mutation testing (``bash .ci/mutate
core/methods/drs_lora.py``) found it untested: the default target ``sparsity`` (0.5) and
``closed_rank`` before any task was closed (-1, "none yet")."""


from lorakit.core import make_config


def test_defaults_and_no_closed_task_yet(one_layer):
    cfg = make_config("drs_lora")
    assert (cfg.sparsity, cfg.sparsity_ramp, cfg.w_init, cfg.prox_lr) == (0.5, 10, 1.0, 1e-3)
    model, m, _, _ = one_layer("drs_lora", r=3)
    assert int(m.closed_rank) == -1
    assert int(model.state_dict()["0.adapters.default.weight.closed_rank"]) == -1  # saved
