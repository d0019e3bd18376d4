"""Every chapter runs as in Colab: the thirteen chapters copied into an empty folder, executed under
nbval by a fresh virtual environment that has only the project's dependencies, with
``google.colab`` faked so that each chapter's first cell takes its own install path and installs
the wheel of this checkout (``HFL_COLAB_INSTALL``). Nothing else is installed and nothing is read
from the repository: the samples must travel with the package.

Slow (all thirteen chapters on the CPU preset, several minutes); it belongs in CI.
"""
from __future__ import annotations

import shutil
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
import book  # noqa: E402  (tools/book.py)

pytestmark = pytest.mark.slow

# An IPython startup file for the kernels: Colab's module, and a note of where hfl_lite came from.
FAKE_COLAB = textwrap.dedent('''
    import os
    import sys
    import types

    output = types.ModuleType("google.colab.output")
    output.enable_custom_widget_manager = lambda: None
    colab = types.ModuleType("google.colab")
    colab.output = output
    sys.modules.update({"google.colab": colab, "google.colab.output": output})


    def _note_hfl_lite(result):
        module = sys.modules.get("hfl_lite")
        if module is not None and not getattr(_note_hfl_lite, "done", False):
            _note_hfl_lite.done = True
            with open(os.environ["HFL_TEST_KERNEL_LOG"], "a") as log:
                log.write(f"{sys.executable} {module.__file__}\\n")


    get_ipython().events.register("post_run_cell", _note_hfl_lite)
''')


def test_every_chapter_runs_after_its_first_cell_in_a_colab_like_environment(hfl_wheel, make_venv, tmp_path):
    venv = make_venv()
    startup = tmp_path / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True)
    (startup / "00-fake-colab.py").write_text(FAKE_COLAB)
    chapters = book.toc_notebooks()
    assert len(chapters) == 13
    folder = tmp_path / "colab"
    folder.mkdir()
    for chapter in chapters:
        shutil.copy2(chapter, folder / chapter.name)
    log = tmp_path / "kernels.log"
    done = venv.run(["-m", "pytest", "--nbval-lax", "--nbval-current-env", "-p", "no:cacheprovider", "-q",
                     *[c.name for c in chapters]], cwd=folder, timeout=3000, HFL_PRESET="cpu",
                    IPYTHONDIR=str(tmp_path / "ipython"), HFL_TEST_KERNEL_LOG=str(log),
                    HFL_COLAB_INSTALL=f"--no-index --no-deps --ignore-installed {hfl_wheel}")
    assert " passed" in done.stdout and "failed" not in done.stdout, done.stdout[-3000:]
    kernels = [line.split() for line in log.read_text().splitlines()]
    assert len(kernels) == len(chapters)  # every chapter's kernel imported hfl_lite...
    for python, package in kernels:  # ...from the package its first cell installed into the fresh environment
        assert python == str(venv.python) and package == str(venv.site / "hfl_lite" / "__init__.py")
    assert not [p for p in folder.iterdir() if p.suffix != ".ipynb"]  # the chapters wrote nothing beside them
