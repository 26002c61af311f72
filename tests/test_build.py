"""dynwf build: the tree pywrangler deploys, its checks, the TENANT_CODE bulk file, the steps left."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dynwf.build import KV_FILE, BuildError, build_project
from dynwf.project._tenant_code import tenant_code_entries

CLOUDFLARE_STYLE = Path(__file__).resolve().parent / "fixtures" / "portability" / "cloudflare_style"
PYPROJECT = """\
[project]
name = "portable-platform"
version = "0.1.0"
requires-python = ">=3.12"
dependencies = ["dynamic-workflows"]

[dependency-groups]
dev = ["dynwf", "workers-py", "workers-runtime-sdk"]

[tool.uv.sources]
dynamic-workflows = { path = "../dynamic-workflows/packages/dynamic-workflows-py" }
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "platform"
    shutil.copytree(CLOUDFLARE_STYLE, root)
    return root


def _blocking(report_todo: tuple[object, ...]) -> list[str]:
    return [t.text for t in report_todo if getattr(t, "blocking", False)]  # type: ignore[attr-defined]


def test_build_writes_the_tree_pywrangler_uploads_and_the_kv_file(project: Path) -> None:
    (project / "pyproject.toml").write_text(PYPROJECT, encoding="utf-8")
    (project / "src" / "__pycache__").mkdir()
    (project / "src" / "__pycache__" / "entry.cpython-311.pyc").write_bytes(b"x")
    (project / "tests").mkdir()
    (project / "tests" / "test_x.py").write_text("x = 1\n", encoding="utf-8")

    report = build_project(project)

    out = project / "dist"
    assert report.out_dir == out
    assert report.files == ("pyproject.toml", "src/entry.py", KV_FILE, "wrangler.toml")
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == [".dynwf-build", *report.files]
    assert (out / "src" / "entry.py").read_bytes() == (project / "src" / "entry.py").read_bytes()
    assert (out / "pyproject.toml").read_text(encoding="utf-8") == PYPROJECT
    bulk = json.loads((out / KV_FILE).read_text(encoding="utf-8"))
    assert {row["key"]: row["value"] for row in bulk} == tenant_code_entries(project)
    assert all(set(row) == {"key", "value"} for row in bulk)
    assert report.kv_keys == len(bulk) == 5
    manifest = json.loads(next(r["value"] for r in bulk if r["key"] == "shop/_manifest.json"))
    assert manifest["mainModule"] == "worker.py"
    assert manifest["modules"] == ["prices.py", "worker.py"]
    assert report.diagnostics == ()
    assert report.deployable
    commands = [t.command for t in report.todo]
    assert commands == [
        f"cd dist && npx wrangler kv bulk put {KV_FILE} --binding TENANT_CODE --remote",
        "cd dist && uv run pywrangler deploy",
    ]


def test_build_tenant_code_version_follows_the_code(project: Path) -> None:
    def version() -> str:
        entries = tenant_code_entries(project)
        return str(json.loads(entries["mail/_manifest.json"])["version"])

    before = version()
    assert len(before) == 16
    assert version() == before
    worker = project / "tenants" / "mail" / "worker.py"
    worker.write_text(worker.read_text(encoding="utf-8") + "\n# changed\n", encoding="utf-8")
    assert version() != before


def test_build_lists_what_is_left_and_is_not_deployable_until_done(project: Path) -> None:
    config = project / "wrangler.toml"
    text = config.read_text(encoding="utf-8")
    config.write_text(
        text.replace('id = "0123456789abcdef0123456789abcdef"', 'id = "<your namespace id>"'),
        encoding="utf-8",
    )

    report = build_project(project)

    blocking = _blocking(report.todo)
    assert len(blocking) == 2
    assert blocking[0].startswith("vendor the dynamic_workflows library")
    assert "not on PyPI" in blocking[0]
    assert blocking[1].startswith("create the KV namespace")
    assert '"<your namespace id>" is not a namespace id' in blocking[1]
    assert [t.command for t in report.todo if t.blocking] == [
        None,
        "npx wrangler kv namespace create TENANT_CODE",
    ]
    assert not report.deployable
    # The project had no pyproject.toml: build wrote one naming workers-py.
    written = (project / "dist" / "pyproject.toml").read_text(encoding="utf-8")
    assert 'dev = ["workers-py", "workers-runtime-sdk"]' in written

    config.write_text(text.replace('id = "0123456789abcdef0123456789abcdef"\n', ""), "utf-8")
    assert any(
        'add id = "<that id>" to the TENANT_CODE binding' in t
        for t in _blocking(build_project(project).todo)
    )
    without = text.replace('[[kv_namespaces]]\nbinding = "TENANT_CODE"\n', "").replace(
        'id = "0123456789abcdef0123456789abcdef"\n', ""
    )
    config.write_text(without, "utf-8")
    assert any(
        'add [[kv_namespaces]] binding = "TENANT_CODE" id = "<that id>"' in t
        for t in _blocking(build_project(project).todo)
    )


def test_build_with_library_vendored_in_python_modules_ships_it(project: Path) -> None:
    (project / "pyproject.toml").write_text(
        '[project]\nname = "p"\nversion = "0"\ndependencies = []\n', encoding="utf-8"
    )
    report = build_project(project, check_only=True)
    assert [t.command for t in report.todo if t.blocking] == ["uv add --dev workers-py", None]
    (project / "pyproject.toml").write_text(
        '[project]\nname = "p"\nversion = "0"\ndependencies = []\n\n'
        '[dependency-groups]\ndev = ["workers-py"]\n',
        encoding="utf-8",
    )
    vendored = project / "python_modules" / "dynamic_workflows"
    vendored.mkdir(parents=True)
    # A marker only: what build looks for is where the library is, not what it says.
    (vendored / "__init__.py").write_text('"""vendored here"""\n', encoding="utf-8")

    report = build_project(project)

    assert "python_modules/dynamic_workflows/__init__.py" in report.files
    assert (project / "dist" / "python_modules" / "dynamic_workflows" / "__init__.py").is_file()
    assert report.deployable, report.todo


def test_build_refuses_dynwf_anywhere_in_the_tree(project: Path) -> None:
    (project / "pyproject.toml").write_text(
        '[project]\nname = "p"\nversion = "0"\ndependencies = ["dynwf", "dynamic-workflows"]\n\n'
        '[dependency-groups]\ndev = ["workers-py"]\n',
        encoding="utf-8",
    )
    vendored = project / "python_modules" / "helper"
    vendored.mkdir(parents=True)
    (vendored / "__init__.py").write_text("import os\nfrom dynwf.dispatch import x\n", "utf-8")
    entry = project / "src" / "entry.py"
    entry.write_text("import dynwf\n" + entry.read_text(encoding="utf-8"), encoding="utf-8")

    report = build_project(project, check_only=True)

    assert [(d.code, Path(d.file).name, d.line) for d in report.errors] == [
        ("dynwf.portability.dynwf-import", "entry.py", 1),
        ("dynwf.build.dynwf-import", "__init__.py", 2),
        ("dynwf.build.pyproject", "pyproject.toml", 1),
    ]
    assert not report.deployable
    assert report.out_dir is None
    assert not (project / "dist").exists()


def test_build_needs_each_workflow_class_at_the_top_of_main(project: Path) -> None:
    entry = project / "src" / "entry.py"
    entry.write_text(
        entry.read_text(encoding="utf-8").replace(
            "DynamicWorkflow = create_dynamic_workflow_entrypoint(load_runner)",
            "def make():\n    return create_dynamic_workflow_entrypoint(load_runner)",
        ),
        encoding="utf-8",
    )
    report = build_project(project, check_only=True)
    assert [d.code for d in report.errors] == ["dynwf.build.class-missing"]


def test_build_refuses_an_out_dir_it_did_not_write(project: Path, tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep", encoding="utf-8")
    with pytest.raises(BuildError, match="was not written by `dynwf build`"):
        build_project(project, mine)
    assert (mine / "notes.txt").read_text(encoding="utf-8") == "keep"
    with pytest.raises(BuildError, match="main module's folder"):
        build_project(project, project / "src" / "out")
    build_project(project, tmp_path / "again")
    build_project(project, tmp_path / "again")  # its own output is replaced


def test_cli_build_json_and_exit_codes(project: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "dynwf", "build", "--json"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    payload = json.loads(done.stdout)
    assert payload["deployable"] is False
    assert payload["out"] == str(project / "dist")
    assert payload["kv_keys"] == 5
    assert [t["blocking"] for t in payload["todo"]] == [True, False, False]

    missing = subprocess.run(
        [sys.executable, "-m", "dynwf", "build", "--config", str(project / "nowhere")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert missing.returncode == 2
    assert "does not exist" in missing.stderr
