"""A library's multi-line ValueError reaches the page as one line (the web apps' fuzz test
found torch's NaN-logits message, five lines of tensor, when NaN audio got to the model)."""

import gradio as gr
import pytest

from lorakit.apps.web.common import guarded


def test_a_multi_line_value_error_becomes_its_first_line():
    def handler():
        raise ValueError("Expected parameter logits to satisfy the constraint:\ntensor([[nan]])")

    with pytest.raises(gr.Error) as err:
        guarded(handler)()
    assert str(err.value.message) == "Expected parameter logits to satisfy the constraint:"
