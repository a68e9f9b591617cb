"""The README's ten-line example runs, and its comments tell the truth."""

import re
from pathlib import Path

import torch


def test_readme_example_runs_and_matches_the_exact_answers():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    code = re.search(r"## Ten lines\s+```python\n(.*?)```", readme, re.S).group(1)
    assert len([line for line in code.splitlines() if line.strip()]) <= 11
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    H, top, trace, density = scope["H"], scope["top"], scope["trace"], scope["density"]
    assert H.shape == (227, 227) and f"({H.shape[0]} × {H.shape[1]})" in code
    torch.testing.assert_close(top, torch.linalg.eigvalsh(H).flip(0)[:3], atol=0, rtol=1e-5)
    assert abs(trace.value - H.trace().item()) <= 4 * trace.stderr + 1e-12
    assert abs(density.weights.sum().item() - 1) < 1e-12
