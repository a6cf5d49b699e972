"""The Gradio demo hub (``hub``), its tabs (``clip``, ``cod``, ``asr``, ``ood``), what they
share (``common``: limits, run-folder checks, uploads) and the pre-made runs (``prebuilt``)."""
