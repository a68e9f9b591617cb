"""One module per notebook: the paper's experiment as plain functions.

They take the knobs and return small dataclasses of results. The notebooks plot them; the tests call them headless
with the notebooks' quick settings.
"""
