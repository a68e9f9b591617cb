"""The static gallery: every notebook executed and written as HTML with its figures, and an index page.

Run: ``make gallery`` (= ``.venv/bin/python docs/gallery.py build/notebooks --executed build/gallery --site site``),
then open ``site/index.html``.

Each notebook runs in this Python's kernel, where hesslab picks the sizes: paper-like on a GPU, quick on a CPU
(``HESSLAB_SCALE=quick|full`` overrides). The executed notebook, with its widget state, is kept in
``build/gallery/NN_topic.ipynb`` (``docs/make_thumbnails.py`` reads it) and exported to ``site/NN_topic.html``. A
widget panel cannot move in a static page, so each widget is replaced by a snapshot: its controls' values over the
figure it drew. ``site/index.html`` lists every notebook with its title, paper, phenomenon and thumbnail.

The gallery convention: the index card comes from the notebook itself.
- title: the first ``# `` heading of the first markdown cell;
- paper: the line of that cell starting with ``**Paper:**``;
- phenomenon: the line of that cell starting with ``**Phenomenon:**``;
- thumbnail: the first PNG shown by the code cell tagged ``thumbnail`` (``# %% tags=["thumbnail"]``), in its outputs
  or inside the widget panel it displays.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
from ipykernel.kernelspec import RESOURCES, get_kernel_dict
from jupyter_client import KernelManager
from jupyter_client.kernelspec import NATIVE_KERNEL_NAME, KernelSpec, KernelSpecManager
from traitlets import default

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")  # the colours of tracebacks
THUMBNAIL_WIDTH = 480
CELL_TIMEOUT_S = 1800


@dataclass(frozen=True)
class Card:
    """What the index says of a notebook; None where the notebook does not say it (see the convention above)."""

    title: str | None
    paper: str | None
    phenomenon: str | None


def card(notebook: nbformat.NotebookNode) -> Card:
    """The title, paper and phenomenon from the notebook's first markdown cell."""
    first = next((cell.source for cell in notebook.cells if cell.cell_type == "markdown"), "")

    def line(pattern: str) -> str | None:
        found = re.search(pattern, first, re.MULTILINE | re.IGNORECASE)
        return found.group(1).strip() if found else None

    return Card(title=line(r"^#\s+(.+)$"),
                paper=line(r"^\s*\*\*Papers?(?::\*\*|\*\*:)\s*(.+)$"),
                phenomenon=line(r"^\s*\*\*Phenomen(?:on|a)(?::\*\*|\*\*:)\s*(.+)$"))


def widget_states(notebook: nbformat.NotebookNode) -> dict:
    """model id -> {model_name, state} of the widgets the notebook displayed (stored by the execution)."""
    return notebook.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})


def referenced(value) -> str | None:
    """The model id of a widget reference ``IPY_MODEL_<id>``."""
    return value[len("IPY_MODEL_"):] if isinstance(value, str) and value.startswith("IPY_MODEL_") else None


def output_pngs(outputs: list, states: dict):
    """The PNGs (bytes) that outputs show, in order, including those inside the widgets they display."""
    for output in outputs:
        data = output.get("data", {})
        if "image/png" in data:
            yield base64.b64decode(data["image/png"])
        elif WIDGET_VIEW in data:
            yield from widget_pngs(data[WIDGET_VIEW]["model_id"], states)


def widget_pngs(model_id: str, states: dict):
    state = states.get(model_id, {}).get("state", {})
    for child in state.get("children", []):
        yield from widget_pngs(referenced(child), states)
    yield from output_pngs(state.get("outputs", []), states)


def thumbnail_cells(notebook: nbformat.NotebookNode) -> list:
    """The code cells tagged ``thumbnail``."""
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    return [cell for cell in code if "thumbnail" in cell.metadata.get("tags", [])]


def thumbnail_png(notebook: nbformat.NotebookNode) -> bytes | None:
    """The first PNG shown by the cell tagged ``thumbnail`` (by any code cell when none is tagged); None if none."""
    cells = thumbnail_cells(notebook) or [cell for cell in notebook.cells if cell.cell_type == "code"]
    states = widget_states(notebook)
    return next((png for cell in cells for png in output_pngs(cell.get("outputs", []), states)), None)


def write_thumbnail(png: bytes, path: Path, width: int = THUMBNAIL_WIDTH) -> None:
    """``png`` scaled down (aspect kept) to ``width`` pixels, written to ``path``."""
    from PIL import Image

    image = Image.open(io.BytesIO(png))
    if image.width > width:
        image = image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, optimize=True)


def widget_snapshot(model_id: str, states: dict) -> str:
    """A widget as static HTML: boxes as rows/columns, controls as ``name = value``, outputs as what they show."""
    model = states.get(model_id)
    if model is None:
        return ""
    name, state = model["model_name"], model["state"]
    if "children" in state:
        direction = "column" if name == "VBoxModel" else "row"
        children = "".join(widget_snapshot(referenced(child), states) for child in state["children"])
        return f'<div style="display:flex;flex-direction:{direction};flex-wrap:wrap;gap:0.3em 1.5em">{children}</div>'
    if name == "OutputModel":
        return "".join(output_snapshot(output, states) for output in state.get("outputs", []))
    if name in ("FloatProgressModel", "IntProgressModel"):
        return f'<progress value="{state.get("value", 0)}" max="{state.get("max", 100)}"></progress>'
    if name in ("HTMLModel", "HTMLMathModel"):
        return f"<span>{state.get('value', '')}</span>"
    if name == "LabelModel":
        return f"<span>{html.escape(str(state.get('value', '')))}</span>"
    if "_options_labels" in state and "index" in state:  # Dropdown, ToggleButtons, RadioButtons: value by index
        index = state["index"]
        value = ", ".join(state["_options_labels"][i] for i in index) if isinstance(index, list) \
            else state["_options_labels"][index] if index is not None else ""
    elif "value" in state:
        value = state["value"]
    else:
        return ""
    label = html.escape(state.get("description") or "")
    return f"<span><b>{label}</b> = <code>{html.escape(str(value))}</code></span>"


def output_snapshot(output: dict, states: dict) -> str:
    data = output.get("data", {})
    if "image/png" in data:
        return f'<div><img src="data:image/png;base64,{"".join(data["image/png"]).strip()}"></div>'
    if WIDGET_VIEW in data:
        return widget_snapshot(data[WIDGET_VIEW]["model_id"], states)
    if "text/html" in data:
        return "".join(data["text/html"])
    text = "".join(output.get("text") or data.get("text/plain") or "\n".join(output.get("traceback", [])))
    return f"<pre>{html.escape(ANSI_ESCAPE.sub('', text))}</pre>" if text else ""


def freeze_widgets(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy in which every displayed widget is its static snapshot, and no widget state is left."""
    frozen = nbformat.from_dict(notebook)
    states = widget_states(frozen)
    for cell in frozen.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if WIDGET_VIEW in data:
                snapshot = widget_snapshot(data[WIDGET_VIEW]["model_id"], states)
                output["data"] = {"text/html": f'<div class="hesslab-widget-snapshot">{snapshot}</div>',
                                  "text/plain": data.get("text/plain", "")}
    frozen.metadata.pop("widgets", None)
    return frozen


class ThisPythonKernelSpecs(KernelSpecManager):
    """The ``python3`` kernel is this interpreter, whatever kernelspecs the machine has (like nbval's current env)."""

    def get_kernel_spec(self, kernel_name):
        spec = {key: value for key, value in get_kernel_dict().items() if KernelSpec.class_traits().get(key)}
        return KernelSpec(resource_dir=RESOURCES, **spec)


class ThisPythonKernel(KernelManager):
    @default("kernel_spec_manager")
    def _this_python(self):
        return ThisPythonKernelSpecs()


def execute(notebook: nbformat.NotebookNode, cwd: Path, timeout_s: int = CELL_TIMEOUT_S) -> str | None:
    """Run every cell in place (outputs and widget state stored); the error message, or None when all ran."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    client = NotebookClient(notebook, kernel_name=NATIVE_KERNEL_NAME, kernel_manager_class=ThisPythonKernel,
                            timeout=timeout_s, store_widget_state=True, resources={"metadata": {"path": str(cwd)}})
    try:
        client.execute()
    except CellExecutionError as error:
        return str(error)
    return None


def inline_markdown(text: str | None) -> str:
    if not text:
        return '<span class="missing">—</span>'
    from nbconvert.filters import markdown2html

    return re.sub(r"^<p>(.*)</p>\s*$", r"\1", markdown2html(text).strip(), flags=re.S)


def index_page(entries: list[tuple[str, Card, str | None, float]], footer: str) -> str:
    """The index: one row per notebook (stem, card, thumbnail file or None, run time in seconds)."""
    rows = []
    for stem, info, thumbnail, seconds in entries:
        image = f'<img src="{thumbnail}" alt="{html.escape(stem)}">' if thumbnail else ""
        rows.append(f"""<tr><td class="thumb"><a href="{stem}.html">{image}</a></td>
<td><a href="{stem}.html"><b>{html.escape(info.title or stem)}</b></a><br><small>{stem} · {seconds:.0f} s</small></td>
<td>{inline_markdown(info.paper)}</td><td>{inline_markdown(info.phenomenon)}</td></tr>""")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>hesslab notebooks</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 80em; padding: 0 1em; color: #222; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 0.6em; text-align: left; vertical-align: top; }}
td.thumb img {{ width: 240px; border: 1px solid #eee; }}
.missing {{ color: #b00; }}
footer {{ margin-top: 2em; color: #666; font-size: small; }}
</style></head><body>
<h1>hesslab notebooks</h1>
<p>Each notebook reproduces one paper's phenomenon. These pages are the notebooks executed once; open them in
JupyterLab (<code>make lab</code>) to move the sliders.</p>
<table><thead><tr><th></th><th>notebook</th><th>paper</th><th>phenomenon</th></tr></thead><tbody>
{chr(10).join(rows)}
</tbody></table>
<footer>{footer}</footer>
</body></html>
"""


def build(sources: list[Path], executed_dir: Path, site: Path, timeout_s: int = CELL_TIMEOUT_S) -> list[str]:
    """Execute, export and index every notebook; the names of those that failed (their pages show the error)."""
    from nbconvert import HTMLExporter

    executed_dir.mkdir(parents=True, exist_ok=True)
    (site / "thumbnails").mkdir(parents=True, exist_ok=True)
    exporter = HTMLExporter(template_name="lab")
    entries, failed = [], []
    for source in sources:
        notebook = nbformat.read(source, as_version=4)
        print(f"gallery: executing {source.name} ...", flush=True)
        start = time.perf_counter()
        error = execute(notebook, executed_dir, timeout_s)
        seconds = time.perf_counter() - start
        if error:
            failed.append(source.stem)
            print(f"gallery: {source.name} FAILED:\n{error}", file=sys.stderr)
        nbformat.write(notebook, executed_dir / source.name)
        page, _ = exporter.from_notebook_node(freeze_widgets(notebook))
        (site / f"{source.stem}.html").write_text(page, encoding="utf-8")
        info = card(notebook)
        for field in ("title", "paper", "phenomenon"):
            if getattr(info, field) is None:
                print(f"gallery: {source.name}: no {field} in the first markdown cell (see docs/gallery.py)",
                      file=sys.stderr)
        png = thumbnail_png(notebook)
        if not thumbnail_cells(notebook):
            print(f"gallery: {source.name}: no code cell tagged 'thumbnail'; its first figure is used",
                  file=sys.stderr)
        thumbnail = None
        if png is not None:
            thumbnail = f"thumbnails/{source.stem}.png"
            write_thumbnail(png, site / thumbnail)
        entries.append((source.stem, info, thumbnail, seconds))
        print(f"gallery: {source.name} done in {seconds:.0f} s", flush=True)
    (site / "index.html").write_text(index_page(entries, footer_text()), encoding="utf-8")
    return failed


def footer_text() -> str:
    import torch

    import hesslab as hl
    from hesslab.runtime import scale

    return (f"Executed {time.strftime('%Y-%m-%d %H:%M')} at scale <code>{scale()}</code> on "
            f"<code>{hl.device()}</code>, torch {torch.__version__}.")


def notebook_files(paths: list[Path], suffix: str = ".ipynb") -> list[Path]:
    """The NN_topic notebooks named, folders expanded."""
    found = []
    for path in paths:
        found += sorted(path.glob(f"[0-9]*{suffix}")) if path.is_dir() else [path]
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="+", type=Path, help=".ipynb files or folders of them (build/notebooks)")
    parser.add_argument("--executed", type=Path, default=Path("build/gallery"), help="where executed notebooks go")
    parser.add_argument("--site", type=Path, default=Path("site"), help="where the HTML goes")
    parser.add_argument("--timeout", type=int, default=CELL_TIMEOUT_S, help="seconds one cell may run")
    args = parser.parse_args(argv)
    sources = notebook_files(args.notebooks)
    if not sources:
        print(f"gallery: no NN_topic.ipynb in {[str(p) for p in args.notebooks]}: run `make notebooks` first",
              file=sys.stderr)
        return 1
    failed = build(sources, args.executed, args.site, args.timeout)
    print(f"gallery: {len(sources) - len(failed)} of {len(sources)} notebooks in {args.site}/index.html")
    if failed:
        print(f"gallery: failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
