"""``dynwf init``: through the real command line, then the scaffolded project's own checks."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import dynwf.scaffold
from dynwf.scaffold import TENANT_ID_PATTERN, ScaffoldResult, add_tenant, init_project

ROOT = Path(__file__).parent.parent
PROJECT_FILES = {
    ".gitignore",
    "README.md",
    "pyproject.toml",
    "pytest.ini",
    "src/entry.py",
    "tenants/approvals/worker.py",
    "tenants/payments/gateway.py",
    "tenants/payments/worker.py",
    "tests/test_approvals.py",
    "tests/test_http.py",
    "tests/test_payments.py",
    "wrangler.toml",
}


def run(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """``python -m <args>`` with this interpreter, as a user's shell would run it."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "PYTHONPATH")}
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run("dynwf", *args, cwd=cwd)


def tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_init_creates_the_project(tmp_path: Path) -> None:
    done = cli("init", "My_Platform", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    project = tmp_path / "My_Platform"
    assert set(tree(project)) == PROJECT_FILES
    for path in PROJECT_FILES:
        assert f"created {path}" in done.stdout
    assert "Next steps:" in done.stdout and "cd My_Platform" in done.stdout
    wrangler = tomllib.loads((project / "wrangler.toml").read_text())
    assert wrangler["name"] == "my-platform"  # the folder name as a Worker name
    assert wrangler["main"] == "src/entry.py"
    assert wrangler["compatibility_flags"] == ["python_workers"]
    assert wrangler["worker_loaders"] == [{"binding": "LOADER"}]
    assert wrangler["workflows"] == [
        {"name": "dynamic-workflow", "binding": "WORKFLOWS", "class_name": "DynamicWorkflow"}
    ]
    for path, data in tree(project).items():
        assert b"__project__" not in data and b"__tenant" not in data, path


def test_init_again_skips_every_file_and_changes_nothing(tmp_path: Path) -> None:
    assert cli("init", "p", cwd=tmp_path).returncode == 0
    project = tmp_path / "p"
    (project / "src" / "entry.py").write_text("# my own dispatcher\n")
    before = tree(project)

    again = cli("init", "p", cwd=tmp_path)

    assert again.returncode == 0, again.stderr
    assert tree(project) == before
    assert "created" not in again.stdout
    for path in PROJECT_FILES:
        assert f"skipped (exists): {path}" in again.stdout


def test_init_json_lists_created_then_skipped(tmp_path: Path) -> None:
    first = cli("init", "p", "--json", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert set(report) == {"created", "skipped"}
    assert set(report["created"]) == PROJECT_FILES and report["skipped"] == []

    second = json.loads(cli("init", "--json", cwd=tmp_path / "p").stdout)
    assert second["created"] == [] and set(second["skipped"]) == PROJECT_FILES


def test_init_tenant_adds_a_tenant_and_its_test(tmp_path: Path) -> None:
    assert cli("init", "p", cwd=tmp_path).returncode == 0
    project = tmp_path / "p"

    done = cli("init", "--tenant", "acme-eu", "--json", cwd=project)

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "created": ["tenants/acme-eu/worker.py", "tests/test_acme_eu.py"],
        "skipped": [],
    }
    assert 'Tenant "acme-eu"' in (project / "tenants/acme-eu/worker.py").read_text()
    assert "def test_acme_eu_workflow_completes" in (project / "tests/test_acme_eu.py").read_text()
    again = cli("init", "--tenant", "acme-eu", str(project), cwd=tmp_path)
    assert again.returncode == 0
    assert "skipped (exists): tenants/acme-eu/worker.py" in again.stdout


@pytest.mark.parametrize("name", ["Acme", "-acme", "acme_eu", "a" * 64, "acme/../x", ""])
def test_init_tenant_refuses_a_bad_tenant_id(tmp_path: Path, name: str) -> None:
    assert cli("init", cwd=tmp_path).returncode == 0
    before = tree(tmp_path)

    done = cli("init", "--tenant", name, cwd=tmp_path)

    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "not a valid tenant id" in done.stderr
    assert tree(tmp_path) == before


def test_init_tenant_needs_a_project(tmp_path: Path) -> None:
    done = cli("init", "--tenant", "acme", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    assert "has no wrangler.toml" in done.stderr and "dynwf init" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_init_into_a_file_fails(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("")
    done = cli("init", "taken", cwd=tmp_path)
    assert done.returncode == 1 and "is not a directory" in done.stderr


def test_init_keeps_an_existing_jsonc_config(tmp_path: Path) -> None:
    (tmp_path / "wrangler.jsonc").write_text('{"name": "mine"}\n')
    result = init_project(tmp_path)
    assert "wrangler.toml" in result.skipped
    assert not (tmp_path / "wrangler.toml").exists()


def test_init_help_shows_examples_json_shape_and_exit_codes(tmp_path: Path) -> None:
    done = cli("init", "--help", cwd=tmp_path)
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    assert "Examples:" in text and "dynwf init --tenant acme" in text
    assert '{"created": [str, ...], "skipped": [str, ...]}' in text
    assert "Exit status: 0" in text


def test_scaffold_api_returns_relative_paths(tmp_path: Path) -> None:
    result = init_project(tmp_path / "api")
    assert isinstance(result, ScaffoldResult) and result.root == tmp_path / "api"
    assert set(result.created) == PROJECT_FILES and result.skipped == ()
    tenant = add_tenant(tmp_path / "api", "zed")
    assert tenant.created == ("tenants/zed/worker.py", "tests/test_zed.py")
    assert dynwf.scaffold.__all__ == [
        "TENANT_ID_PATTERN",
        "InvalidTenantIdError",
        "NotAProjectError",
        "ScaffoldError",
        "ScaffoldResult",
        "add_tenant",
        "check_tenant_id",
        "init_project",
    ]


def test_dispatcher_template_uses_the_scaffold_tenant_id_rule() -> None:
    entry = (ROOT / "templates" / "project" / "src" / "entry.py").read_text()
    found = re.search(r'TENANT_ID = re\.compile\(r"([^"]+)"\)', entry)
    assert found is not None and found.group(1) == TENANT_ID_PATTERN


def test_scaffolded_project_validates_with_no_findings(tmp_path: Path) -> None:
    init_project(tmp_path)
    add_tenant(tmp_path, "acme")
    done = cli("validate", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    # Not even a warning: the tenants read wait_for_event results and instance handles
    # the way Cloudflare's tenant SDK hands them over (python_from_rpc, handle["id"]).
    assert json.loads(done.stdout)["diagnostics"] == []
    done = cli("validate", cwd=tmp_path)
    assert "(0 errors, 0 warnings)" in done.stdout, done.stdout


@pytest.mark.slow
def test_scaffolded_project_tests_pass(tmp_path: Path) -> None:
    init_project(tmp_path)
    add_tenant(tmp_path, "acme")
    done = run("pytest", "-p", "no:cacheprovider", "-q", "-W", "error", cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert re.search(r"\b13 passed\b", done.stdout), done.stdout[-1000:]


def test_wrangler_toml_example_validates_with_the_scaffolded_dispatcher(tmp_path: Path) -> None:
    init_project(tmp_path)
    (tmp_path / "wrangler.toml").unlink()
    shutil.copy(ROOT / "wrangler.toml.example", tmp_path / "wrangler.toml")
    done = cli("validate", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    # The example config draws nothing, and the scaffold's code nothing either.
    assert json.loads(done.stdout)["diagnostics"] == []


def test_pyproject_lists_every_dynwf_subpackage() -> None:
    # packages are listed by hand (templates/ is mapped to dynwf._templates), so a
    # new subpackage must be added there or it is missing from the wheel.
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    on_disk = {"dynwf." + p.parent.name for p in (ROOT / "dynwf").glob("*/__init__.py")} | {
        "dynwf",
        "dynwf._templates",
    }
    assert listed == on_disk, f"add to / remove from [tool.setuptools] packages: {listed ^ on_disk}"


def test_scaffold_deployed_code_imports_no_dynwf(tmp_path: Path) -> None:
    # src/ and tenants/ are what Cloudflare runs (the dispatcher via pywrangler deploy,
    # tenants from TENANT_CODE): no dynwf module exists there.
    import ast

    init_project(tmp_path)
    add_tenant(tmp_path, "acme")
    deployed = sorted([*tmp_path.glob("src/**/*.py"), *tmp_path.glob("tenants/**/*.py")])
    assert len(deployed) == 5
    for path in deployed:
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names] if isinstance(node, ast.Import)
                else [node.module or ""] if isinstance(node, ast.ImportFrom)
                else []
            )  # fmt: skip
            assert not any(n.split(".")[0] == "dynwf" for n in names), path
    entry = (tmp_path / "src" / "entry.py").read_text()
    assert "from dynamic_workflows import" in entry and '"DynamicWorkflowBinding"' in entry
    pyproject = tomllib.loads((tmp_path / "pyproject.toml").read_text())
    assert "workers-py" in pyproject["dependency-groups"]["dev"]
    wrangler = tomllib.loads((tmp_path / "wrangler.toml").read_text())
    assert wrangler["kv_namespaces"][0]["binding"] == "TENANT_CODE"
