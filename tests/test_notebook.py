"""examples/quickstart.ipynb runs end to end (nbclient, offline, on the packaged backbone) and
shows what it says it shows; it is committed without outputs."""
import json
import math
import sys
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parent.parent / "examples" / "quickstart.ipynb"


def test_notebook_is_committed_without_outputs():
    nb = json.loads(NOTEBOOK.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(c["outputs"] == [] and c["execution_count"] is None for c in code)


def test_notebook_text_states_the_defaults():
    """Issue 27, item 16: the text said 16 restarts long after the default became 4."""
    import re

    from deepcut.api import compose_config

    cfg = compose_config()
    text = "".join("".join(c["source"]) for c in json.loads(NOTEBOOK.read_text())["cells"] if c["cell_type"] == "markdown")
    assert re.findall(r"By default (\d+) GNNs are trained", text) == [str(cfg.optimizer.restarts)]
    grid = cfg.backbone.resolution // 14  # the offline ViT-S/14
    assert f"{grid} × {grid} patch grid" in text


@pytest.mark.real
@pytest.mark.slow
def test_notebook_runs_and_shows_its_figures(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat", reason="the notebook test needs nbformat (the [dev] extra)")
    nbclient = pytest.importorskip("nbclient", reason="the notebook test needs nbclient (the [dev] extra)")
    pytest.importorskip("ipykernel", reason="the notebook test needs ipykernel (the [dev] extra)")
    # A kernel on this very interpreter, whatever `python` on PATH is.
    spec = tmp_path / "kernels" / "deepcut-test"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "deepcut test", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))

    nb = nbformat.read(NOTEBOOK, as_version=4)
    # Cells fail the test by raising CellExecutionError with the cell's traceback.
    nbclient.NotebookClient(nb, timeout=600, kernel_name="deepcut-test",
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    figures = [c for c in nb.cells if c.cell_type == "code" and ("viz.figure(" in c.source or ".plot." in c.source)]
    for cell in figures:  # every picture the notebook promises is drawn
        assert any("image/png" in o.get("data", {}) for o in cell.outputs), cell.source[:80]
    text = "".join(o.get("text", "") for o in outputs)
    assert "CC found" in text and "clusters" in text
    table = next(c for c in nb.cells if c.cell_type == "code" and "read_results" in c.source and "concat" in c.source)
    rows = table.outputs[-1]["data"]["text/plain"].splitlines()
    ious = [float(r.split()[-5]) for r in rows if "horse" in r]
    assert len(ious) == 8 and all(0.0 <= v <= 1.0 and math.isfinite(v) for v in ious)
