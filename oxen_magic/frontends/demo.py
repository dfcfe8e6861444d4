"""`python -m oxen_magic demo`: execute the quickstart notebook and write an HTML copy.

With no OXEN_API_KEY the notebook's first cell starts the embedded local hub, so this runs on a
fresh machine with no account and no network.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m oxen_magic demo", description=__doc__)
    parser.add_argument(
        "notebook", nargs="?", default=None, help="a notebook to run (default: the packaged quickstart)"
    )
    parser.add_argument("--html", default=None, help="where to write the HTML (default: next to cwd)")
    parser.add_argument("--timeout", type=int, default=600, help="seconds one cell may take")
    args = parser.parse_args(argv)

    try:
        import nbformat
        from nbclient import NotebookClient
        from nbclient.exceptions import CellExecutionError
        from nbconvert import HTMLExporter
    except ImportError:
        print('The demo needs the notebook tools: pip install "oxen_magic[demo]"', file=sys.stderr)
        return 2

    # The quickstart ships inside the package, so the demo runs from anywhere after a pip install.
    source = Path(args.notebook) if args.notebook else Path(__file__).parents[1] / "data" / "quickstart.ipynb"
    if not source.is_file():
        print(f"No notebook at {source}; give the path of an .ipynb file.", file=sys.stderr)
        return 2
    target = Path(args.html or source.with_suffix(".html").name)
    notebook = nbformat.read(source, as_version=4)
    print(f"Running {source} ...", flush=True)
    client = NotebookClient(
        notebook, timeout=args.timeout, kernel_name="python3", resources={"metadata": {"path": "."}}
    )
    try:
        client.execute()
    except CellExecutionError as exc:
        print(f"A cell failed:\n{str(exc)[-2000:]}", file=sys.stderr)
        return 1
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and output.get("name") == "stdout":
                print("  " + "".join(output.get("text", "")).strip().replace("\n", "\n  "))
    body, _ = HTMLExporter().from_notebook_node(notebook)
    target.write_text(body, encoding="utf-8")
    print(f"Wrote {target.resolve()} ({target.stat().st_size // 1024} KiB): open it in a browser.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
