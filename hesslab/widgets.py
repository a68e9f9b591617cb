"""The one ipywidgets helper the notebooks share: a control panel that redraws a figure when a control is released.

``panel(draw, k=IntSlider(...), width=Dropdown(...))`` shows the controls above an output area and calls
``draw(k=..., width=...)`` once at once and again whenever a control changes (sliders and text boxes only on
release: ``continuous_update=False``). ``draw`` makes a matplotlib figure; the panel shows it and closes it.

An exception in the first drawing is raised from ``panel`` itself, so a notebook run by nbval fails on it instead of
hiding a traceback inside the output widget. Later redraws (a student moving a slider) show their traceback in the
output area, where the browser tests look for it.
"""

from __future__ import annotations

from collections.abc import Callable

import ipywidgets as widgets
import matplotlib.pyplot as plt

from ._checks import check_callable, check_instance


def panel(draw: Callable[..., object], **controls: widgets.ValueWidget) -> widgets.VBox:
    """Controls over a figure: ``draw(**{name: control.value})`` is redrawn into the output on every change.

    Args:
        draw: makes one matplotlib figure from keyword arguments named like ``controls``.
        controls: ipywidgets value widgets (sliders, dropdowns, toggle buttons); their keyword is ``draw``'s argument.

    Returns:
        A ``VBox`` of the controls and the output area; display it (the last expression of a cell).

    Raises:
        ValueError: without controls.
        TypeError: for a control that is not an ipywidgets value widget.

    Example:
        >>> import contextlib, io, ipywidgets, matplotlib.pyplot as plt
        >>> from hesslab.widgets import panel
        >>> with contextlib.redirect_stdout(io.StringIO()):  # outside Jupyter, clearing the output prints escapes
        ...     box = panel(lambda k: plt.plot(range(k)), k=ipywidgets.IntSlider(value=3, min=1, max=10))
        >>> slider = box.children[0].children[0]
        >>> type(box).__name__, slider.description, slider.continuous_update  # redrawn on release only
        ('VBox', 'k', False)
    """
    if not controls:
        raise ValueError("panel needs at least one control, e.g. panel(draw, k=ipywidgets.IntSlider(...)).")
    check_callable("draw", draw, "draw(**values) -> None (it draws one matplotlib figure)")
    for name, control in controls.items():
        check_instance(f"control {name!r}", control, widgets.ValueWidget,
                       hint="Pass an ipywidgets value widget (a slider, a dropdown, a toggle).")
        if hasattr(control, "continuous_update"):
            control.continuous_update = False
        if not control.description:
            control.description = name
    output = widgets.Output()

    def redraw(change=None) -> BaseException | None:
        values = {name: control.value for name, control in controls.items()}
        output.clear_output(wait=True)
        with output:
            try:
                draw(**values)
                plt.show()
            except BaseException as error:  # shown in the output by ipywidgets; returned for the first draw
                plt.close("all")
                raise_later[0] = error
                raise
        return None

    raise_later: list[BaseException | None] = [None]
    redraw()
    if raise_later[0] is not None:
        raise raise_later[0]
    for control in controls.values():
        control.observe(redraw, names="value")
    return widgets.VBox([widgets.HBox(list(controls.values()), layout=widgets.Layout(flex_flow="row wrap")),
                         output])
