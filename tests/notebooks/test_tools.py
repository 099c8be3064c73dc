"""The course's kernel (tools/kernelspec.py), the Colab pins (tools/colab_links.py), and the widgets of the HTML
export (tools/html_export.py), on temporary copies; then the committed notebooks and README against them."""

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager

from helpers.conversion import SUPPORTED_ARCHITECTURES
from tests.notebooks.claims_common import NUMBER_WORDS
from tools import colab_links, kernelspec
from tools import html_export as export
from tools.make_exercices import dumps, read

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
EXERCICES = sorted((ROOT / "exercices").glob("[0-9][0-9]_*.ipynb"))
README = ROOT / "README.md"


# ------------------------------------------------------------------------------------------------
# The kernel
# ------------------------------------------------------------------------------------------------


def test_register_installs_a_kernel_running_this_python(tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path))
    for _ in range(2):  # registering again updates it
        folder = Path(kernelspec.register())
    assert folder == tmp_path / "kernels" / kernelspec.KERNEL_NAME
    spec = KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")]).get_kernel_spec(kernelspec.KERNEL_NAME)
    assert spec.argv[0] == sys.executable
    assert (spec.display_name, spec.language) == (kernelspec.DISPLAY_NAME, "python")


def test_stamp_names_the_kernel_keeps_the_rest_and_is_idempotent(tmp_path):
    path = tmp_path / "nb.ipynb"
    shutil.copy(NOTEBOOKS[0], path)
    before = read(path)
    assert kernelspec.main([str(path)]) == 0
    after = read(path)
    assert after["metadata"]["kernelspec"] == kernelspec.KERNELSPEC
    assert list(after["metadata"]) == sorted(after["metadata"])  # as Jupyter writes it: no diff when it saves
    assert {k: v for k, v in after["metadata"].items() if k != "kernelspec"} == \
        {k: v for k, v in before["metadata"].items() if k != "kernelspec"}
    assert after["cells"] == before["cells"]
    text = path.read_text(encoding="utf-8")
    assert text == dumps(after)
    assert not kernelspec.stamp_file(path) and path.read_text(encoding="utf-8") == text


def test_stamp_rejects_what_is_not_a_notebook(tmp_path, capsys):
    (tmp_path / "notes.md").write_text("# notes\n", encoding="utf-8")
    (tmp_path / "bad.ipynb").write_text("[]", encoding="utf-8")
    for name, message in [("notes.md", "not a notebook file"), ("missing.ipynb", "not a notebook file"),
                          ("bad.ipynb", "no metadata")]:
        with pytest.raises(SystemExit):
            kernelspec.main([str(tmp_path / name)])
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        kernelspec.main([])


def test_make_run_keeps_the_kernelspec_and_the_widgets(tmp_path):
    """`make run`'s nbconvert options, read from the Makefile, clear the metadata but these two."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8").replace("\\\n", " ")
    recipe = next(line for line in makefile.splitlines() if "nbconvert" in line and "--execute" in line)
    options = [o for o in shlex.split(recipe) if o.startswith("--ClearMetadataPreprocessor.")]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1", metadata={"collapsed": True})])
    nb.metadata = {"kernelspec": kernelspec.KERNELSPEC, "widgets": {export.WIDGET_STATE_MIME: {"state": {}}},
                   "language_info": {"name": "python", "version": "3.11.2"}, "toc": {"depth": 2}}
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    subprocess.run([sys.executable, "-m", "nbconvert", "--to", "notebook", "--inplace", *options, str(path)],
                   check=True, capture_output=True, timeout=120)
    after = read(path)
    assert after["metadata"] == {"kernelspec": kernelspec.KERNELSPEC, "language_info": {"name": "python"},
                                 "widgets": {export.WIDGET_STATE_MIME: {"state": {}}}}
    assert after["cells"][0]["metadata"] == {}


@pytest.mark.parametrize("path", NOTEBOOKS + EXERCICES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_notebook_names_the_course_kernel(path):
    assert read(path)["metadata"].get("kernelspec") == kernelspec.KERNELSPEC, \
        f"{path.name}: run python -m tools.kernelspec notebooks/*.ipynb exercices/*.ipynb"


# ------------------------------------------------------------------------------------------------
# Colab pins
# ------------------------------------------------------------------------------------------------


@pytest.fixture
def copy(tmp_path):
    """README.md, two notebooks and an exercise notebook, copied."""
    files = [README, NOTEBOOKS[0], NOTEBOOKS[-1], EXERCICES[0]]
    out = []
    for path in files:
        target = tmp_path / path.parent.relative_to(ROOT) / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
        out.append(target)
    return out


def test_colab_links_pins_badges_and_cells_and_nothing_else(copy):
    readme, *notebooks = copy
    before = {p: p.read_text(encoding="utf-8") for p in copy}
    for ref in ["v1.0", "0123456789abcdef0123456789abcdef01234567"]:  # a tag, then a commit: the pin moves
        assert colab_links.main(["--repo", "alice/cours", "--ref", ref, *map(str, copy)]) == 0
        pins = colab_links.badge_pins(readme.read_text(encoding="utf-8"))
        assert set(pins.values()) == {("alice/cours", ref)}
        assert {f"notebooks/{NOTEBOOKS[0].name}", f"exercices/{EXERCICES[0].name}"} <= set(pins)
        for path in notebooks:
            nb = read(path)
            assert colab_links.colab_pin(nb) == ("alice/cours", ref)
            assert colab_links.clone_command("alice/cours", ref) in colab_links.source(colab_links.colab_cell(nb))
    # the rest is untouched: the README's other lines, the notebooks' other cells and lines
    old, new = before[readme].splitlines(), readme.read_text(encoding="utf-8").splitlines()
    assert len(old) == len(new)
    assert [a for a, b in zip(old, new, strict=True) if a != b] == [a for a in old if "colab.research" in a]
    for path in notebooks:
        was, now = json.loads(before[path]), read(path)
        index = was["cells"].index(colab_links.colab_cell(was))
        assert [c for i, c in enumerate(now["cells"]) if i != index] == \
            [c for i, c in enumerate(was["cells"]) if i != index]
        changed = [line for line in colab_links.source(now["cells"][index]).splitlines()
                   if line not in colab_links.source(was["cells"][index]).splitlines()]
        assert len(changed) == 1 and changed[0].strip().startswith("!git init")


def test_colab_links_rejects_bad_input_before_writing_anything(copy, tmp_path, capsys):
    no_colab = tmp_path / "sans_colab.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import torch")]), no_colab)
    no_badge = tmp_path / "NOTES.md"
    no_badge.write_text("# Notes\n", encoding="utf-8")
    before = {p: p.read_text(encoding="utf-8") for p in copy}
    cases = [
        (["--repo", "cours", "--ref", "v1"], copy, "expected owner/name"),
        (["--repo", "a/b", "--ref", "release/1"], copy, "expected a tag or commit"),
        (["--repo", "a/b", "--ref=-v1"], copy, "expected a tag or commit"),
        (["--repo", "a/b", "--ref", ""], copy, "expected a tag or commit"),
        (["--repo", "a/b", "--ref", "v1"], [*copy, no_colab], "no Colab cell"),
        (["--repo", "a/b", "--ref", "v1"], [*copy, no_badge], "no Colab badge"),
        (["--repo", "a/b", "--ref", "v1"], [*copy, tmp_path / "absent.ipynb"], "no such file"),
    ]
    for args, files, message in cases:
        with pytest.raises(SystemExit):
            colab_links.main([*args, *map(str, files)])
        assert message in capsys.readouterr().err, (args, message)
    assert {p: p.read_text(encoding="utf-8") for p in copy} == before


@pytest.mark.skipif(shutil.which("git") is None, reason="no git")
def test_the_pinned_command_checks_out_a_tag_or_a_commit(tmp_path):
    """The Colab cell's shell line, run against a local repository instead of GitHub."""
    origin = tmp_path / "origin"
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(origin)]
    subprocess.run(["git", "init", "-q", str(origin)], check=True)
    commits = []
    for version in ["un", "deux"]:
        (origin / "VERSION").write_text(version, encoding="utf-8")
        subprocess.run([*git, "add", "VERSION"], check=True)
        subprocess.run([*git, "commit", "-q", "-m", version], check=True)
        commits.append(subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True,
                                      text=True).stdout.strip())
    subprocess.run([*git, "tag", "v1", commits[0]], check=True)
    for ref, version in [("v1", "un"), (commits[0], "un"), (commits[1], "deux")]:
        work = tmp_path / f"colab-{ref[:8]}"
        work.mkdir()
        line = colab_links.clone_command("alice/cours", ref).replace("https://github.com/alice/cours",
                                                                     origin.as_uri())
        subprocess.run(["bash", "-c", line.removeprefix("!")], cwd=work, check=True, timeout=60)
        assert (work / "cours_interp" / "VERSION").read_text(encoding="utf-8") == version


def test_readme_badges_open_the_ref_that_each_notebook_installs():
    pins = colab_links.badge_pins(README.read_text(encoding="utf-8"))
    for path in NOTEBOOKS + EXERCICES:
        key = f"{path.parent.name}/{path.name}"
        assert key in pins, f"README: no Colab badge for {key}"
        assert pins[key] == colab_links.colab_pin(read(path)), key


# ------------------------------------------------------------------------------------------------
# Widgets in the HTML export
# ------------------------------------------------------------------------------------------------


def _model(name: str, **state) -> dict:
    return {"model_name": name, "state": state}


def test_widget_html_draws_a_saved_bar_and_refuses_what_it_does_not_know():
    state = {"box": _model("HBoxModel", children=["IPY_MODEL_left", "IPY_MODEL_bar", "IPY_MODEL_right"]),
             "left": _model("HTMLModel", value="passes: 100%"),
             "bar": _model("FloatProgressModel", min=10.0, max=40.0, value=40.0, bar_style="success"),
             "right": _model("HTMLModel", value=" 30/30 [00:01&lt;00:00]"),
             "slider": _model("IntSliderModel", value=3)}
    page = export.widget_html("box", state)
    assert re.search(r'<progress max="30.0" value="30.0"', page)
    assert page.index("passes: 100%") < page.index("<progress") < page.index(" 30/30 [00:01&lt;00:00]")
    assert export.widget_html("absent", state) is None
    state["right"] = _model("IntSliderModel", value=3)
    assert export.widget_html("box", state) is None  # a part it cannot draw: the text representation instead


def test_export_shows_the_text_of_a_widget_whose_state_was_not_saved(tmp_path):
    view = {"version_major": 2, "version_minor": 0, "model_id": "absent"}
    cell = nbformat.v4.new_code_cell("...", outputs=[nbformat.v4.new_output(
        "display_data", data={export.WIDGET_VIEW_MIME: view, "text/plain": "passes:   0%|   | 0/30"})])
    path = tmp_path / "01_widgets.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# 01 — W"), cell]), path)
    page = export.export_notebook(path, tmp_path).read_text(encoding="utf-8")
    assert "passes:   0%|   | 0/30" in page and "<progress" not in page and "MathJax" not in page


# ------------------------------------------------------------------------------------------------
# The README's counts
# ------------------------------------------------------------------------------------------------

def _counts(text: str, noun: str) -> list[str]:
    words = "|".join(NUMBER_WORDS["fr"] + NUMBER_WORDS["en"])
    return re.findall(rf"\b({words})\s+(?:Jupyter\s+)?{noun}\b", text, flags=re.IGNORECASE)


def test_readme_counts_the_notebooks_and_the_model_architectures_it_has():
    readme = README.read_text(encoding="utf-8")
    # the model architectures beyond GPT-2 are counted where test_families.py is (SAEs have architectures too)
    families = " ".join(p for p in readme.split("\n\n") if "test_families.py" in p)
    counted = [(" ".join(readme.split()), "notebooks", len(NOTEBOOKS)),
               (" ".join(families.split()), "architectures", len(SUPPORTED_ARCHITECTURES) - 1)]
    for text, noun, number in counted:
        said = _counts(text, noun)
        assert said, f"the README no longer says how many {noun}: drop this check or the noun"
        for word in said:
            assert word.lower() in (NUMBER_WORDS["fr"][number], NUMBER_WORDS["en"][number]), (
                f"README: {word!r} {noun}, there are {number}")
    listed = counted[1][0].split("chaque architecture (")[1].split(")")[0].split(", ")
    assert len(listed) == len(SUPPORTED_ARCHITECTURES) - 1, listed
