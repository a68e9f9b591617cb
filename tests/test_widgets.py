"""widgets.py: the notebooks' control panel."""

import ipywidgets as widgets
import matplotlib
import pytest

from hesslab.widgets import panel

matplotlib.use("Agg")


def test_panel_draws_at_once_and_on_every_change():
    calls = []

    def draw(k, kind):
        calls.append((k, kind))
        matplotlib.pyplot.subplots()

    slider = widgets.IntSlider(value=2, min=1, max=5)
    box = panel(draw, k=slider, kind=widgets.Dropdown(options=["a", "b"], value="a"))
    assert calls == [(2, "a")] and slider.continuous_update is False and slider.description == "k"
    slider.value = 4
    assert calls[-1] == (4, "a") and isinstance(box, widgets.VBox)


def test_panel_raises_an_error_of_the_first_draw():
    def draw(k):
        raise RuntimeError(f"broken at k={k}")

    with pytest.raises(RuntimeError, match="broken at k=1"):
        panel(draw, k=widgets.IntSlider(value=1))
    with pytest.raises(ValueError, match="at least one control"):
        panel(draw)
    with pytest.raises(TypeError, match="value widget"):
        panel(draw, k=widgets.Button(description="x"))
