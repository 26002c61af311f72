"""dynwf.config: parsing with positions, wrangler's rules, dynwf's own checks, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest

import dynwf.config
from dynwf.config import (
    ConfigFileError,
    InvalidConfigError,
    ValidationReport,
    find_config,
    load_config,
    validate_config,
)
from dynwf.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = Path(__file__).resolve().parent / "fixtures" / "configs"

WORKFLOW_NAME_FORMAT = (
    "Workflow names must be 1-64 characters long, start with a letter, number, or underscore, "
    "and may only contain letters, numbers, underscores, or hyphens."
)
ENTRY_0 = '{"name":"bad name!","binding":"WF","class_name":3,"extra":true,"limits":{"steps":30000}}'
ENTRY_1 = '{"name":"second","class_name":"Second","script_name":7,"limits":5}'
PYTHON_FLAG = "The `python_workers` compatibility flag is required to use Python."
UNIQUE_BINDINGS = (
    "Bindings must have unique names, so that they can all be referenced in the worker.\n"
    "Please change your bindings to have unique names."
)

Row = tuple[str, str, str, int, int]


def _rows(report: ValidationReport) -> list[Row]:
    """(severity, message, file name, line, column) for each diagnostic, in order."""
    return [
        (d.severity, d.message, Path(d.file).name, d.line, d.column) for d in report.diagnostics
    ]


def _write(directory: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        target = directory / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return directory


GOOD_ENTRY = """\
from workers import WorkflowEntrypoint


class DynamicWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
        return None
"""


def _toml_project(tmp_path: Path, body: str, entry: str = GOOD_ENTRY) -> Path:
    header = (
        'name = "p"\nmain = "src/entry.py"\ncompatibility_date = "2026-04-01"\n'
        'compatibility_flags = ["python_workers"]\n'
    )
    return _write(tmp_path, {"wrangler.toml": header + body, "src/entry.py": entry})


# -- valid configs ---------------------------------------------------------------------


def test_validate_config_accepts_good_toml() -> None:
    report = validate_config(CONFIGS / "good_toml")
    assert report.valid
    assert report.diagnostics == ()
    assert report.config_path == CONFIGS / "good_toml" / "wrangler.toml"


def test_validate_config_accepts_good_jsonc_with_comments_and_trailing_commas() -> None:
    report = validate_config(CONFIGS / "good_jsonc" / "wrangler.jsonc")
    assert report.diagnostics == ()


def test_load_config_builds_typed_model_with_positions() -> None:
    config = load_config(CONFIGS / "good_toml")
    project = CONFIGS / "good_toml"
    assert config.name == "my-platform"
    assert config.main == project / "src" / "entry.py"
    assert config.compatibility_date == date(2026, 4, 1)
    assert config.compatibility_flags == ("python_workers",)
    assert config.cpu_ms is None
    (workflow,) = config.workflows
    assert (workflow.name, workflow.binding, workflow.class_name) == (
        "dynamic-workflow",
        "WORKFLOWS",
        "DynamicWorkflow",
    )
    assert workflow.script_name is None
    assert workflow.step_limit == 10000
    assert (workflow.location.line, workflow.location.column) == (9, 1)
    assert config.workflow("WORKFLOWS") is workflow
    assert [loader.binding for loader in config.worker_loaders] == ["LOADER"]
    assert config.worker_loaders[0].location.line == 6


def test_load_config_resolves_envs_like_wrangler() -> None:
    staging = load_config(CONFIGS / "good_toml").envs["staging"]
    assert staging.env_name == "staging"
    assert staging.name == "my-platform-staging"  # wrangler appends the env name
    assert staging.main == CONFIGS / "good_toml" / "src" / "entry.py"  # inherited
    assert staging.compatibility_flags == ("python_workers",)  # inherited
    assert [w.name for w in staging.workflows] == ["dynamic-workflow-staging"]  # its own
    assert staging.workflows[0].step_limit is None
    assert staging.workflows[0].location.line == 20


def test_load_config_jsonc_and_toml_describe_the_same_project() -> None:
    toml, jsonc = load_config(CONFIGS / "good_toml"), load_config(CONFIGS / "good_jsonc")
    assert (toml.name, toml.compatibility_date, toml.compatibility_flags) == (
        jsonc.name,
        jsonc.compatibility_date,
        jsonc.compatibility_flags,
    )
    assert [(w.name, w.binding, w.class_name, w.step_limit) for w in toml.workflows] == [
        (w.name, w.binding, w.class_name, w.step_limit) for w in jsonc.workflows
    ]
    assert (jsonc.workflows[0].location.line, jsonc.workflows[0].location.column) == (10, 5)


def test_load_config_raises_invalid_config_error_naming_file_line_column() -> None:
    with pytest.raises(InvalidConfigError) as caught:
        load_config(CONFIGS / "bad_workflows_toml")
    assert isinstance(caught.value, ConfigError)
    assert f"{CONFIGS / 'bad_workflows_toml' / 'wrangler.toml'}:7:8: " in str(caught.value)
    assert not caught.value.report.valid


# -- wrangler's rules ------------------------------------------------------------------


def test_validate_config_wrangler_workflow_rules_toml() -> None:
    report = validate_config(CONFIGS / "bad_workflows_toml")
    assert _rows(report) == [
        ("error", f'"workflows[0]" binding "name" field is invalid. {WORKFLOW_NAME_FORMAT}',
         "wrangler.toml", 7, 8),
        ("error", f'"workflows[0]" bindings should have a string "class_name" field but got '
         f"{ENTRY_0}.", "wrangler.toml", 9, 14),
        ("warning", '"workflows[0]" has a step limit of 30000, which exceeds the production '
         "maximum of 25,000. This configuration may not work when deployed.",
         "wrangler.toml", 12, 9),
        ("warning", 'Unexpected fields found in workflows[0] field: "extra"',
         "wrangler.toml", 10, 1),
        ("error", f'"workflows[1]" bindings should have a string "binding" field but got '
         f"{ENTRY_1}.", "wrangler.toml", 14, 1),
        ("error", '"workflows[1]" bindings should, optionally, have a string "script_name" '
         f"field but got {ENTRY_1}.", "wrangler.toml", 17, 15),
        ("error", '"workflows[1]" bindings should, optionally, have an object "limits" field '
         f"but got {ENTRY_1}.", "wrangler.toml", 18, 10),
        ("error", '"workflows[2]" bindings "limits.steps" field must be a positive integer but '
         "got 0.", "wrangler.toml", 25, 20),
        ("error", '"workflows" bindings must have unique "name" values; duplicate(s) found: '
         '"second"', "wrangler.toml", 21, 8),
        ("error", '"worker_loaders[0]" bindings must have a string "binding" field but got '
         '{"type":"loader"}.', "wrangler.toml", 27, 1),
        ("warning", 'Unexpected fields found in worker_loaders[0] field: "type"',
         "wrangler.toml", 28, 1),
        ("error", '"main" file src/entry.py does not exist (looked for '
         f'{CONFIGS / "bad_workflows_toml" / "src" / "entry.py"}).', "wrangler.toml", 2, 8),
    ]  # fmt: skip
    assert report.diagnostics[0].code == "wrangler.workflows.name-format"
    assert report.diagnostics[-1].code == "dynwf.main.not-found"


def test_validate_config_wrangler_workflow_rules_jsonc() -> None:
    report = validate_config(CONFIGS / "bad_workflows_jsonc")
    assert _rows(report) == [
        ("error", f'"workflows[0]" binding "name" field is invalid. {WORKFLOW_NAME_FORMAT}',
         "wrangler.jsonc", 8, 15),
        ("error", f'"workflows[0]" bindings should have a string "class_name" field but got '
         f"{ENTRY_0}.", "wrangler.jsonc", 10, 21),
        ("warning", '"workflows[0]" has a step limit of 30000, which exceeds the production '
         "maximum of 25,000. This configuration may not work when deployed.",
         "wrangler.jsonc", 12, 28),
        ("warning", 'Unexpected fields found in workflows[0] field: "extra"',
         "wrangler.jsonc", 11, 7),
        ("error", f'"workflows[1]" bindings should have a string "binding" field but got '
         f"{ENTRY_1}.", "wrangler.jsonc", 14, 5),
        ("error", '"workflows[1]" bindings should, optionally, have a string "script_name" '
         f"field but got {ENTRY_1}.", "wrangler.jsonc", 14, 64),
        ("error", '"workflows[1]" bindings should, optionally, have an object "limits" field '
         f"but got {ENTRY_1}.", "wrangler.jsonc", 14, 77),
        ("error", '"workflows[2]" bindings "limits.steps" field must be a positive integer but '
         "got 0.", "wrangler.jsonc", 20, 28),
        ("error", '"workflows" bindings should be objects, but got "not an object"',
         "wrangler.jsonc", 22, 5),
        ("error", '"workflows" bindings must have unique "name" values; duplicate(s) found: '
         '"second"', "wrangler.jsonc", 16, 15),
        ("error", '"worker_loaders[0]" bindings must have a string "binding" field but got '
         '{"type":"loader"}.', "wrangler.jsonc", 24, 22),
        ("warning", 'Unexpected fields found in worker_loaders[0] field: "type"',
         "wrangler.jsonc", 24, 24),
        ("error", '"main" file src/entry.py does not exist (looked for '
         f'{CONFIGS / "bad_workflows_jsonc" / "src" / "entry.py"}).', "wrangler.jsonc", 3, 11),
    ]  # fmt: skip


def test_validate_config_duplicate_binding_names_across_kinds() -> None:
    report = validate_config(CONFIGS / "bad_bindings_toml")
    assert _rows(report) == [
        ("error", "SHARED assigned to KV Namespace, Environment Variable, and Workflow bindings.",
         "wrangler.toml", 10, 11),
        ("error", "SHARED assigned to multiple Workflow bindings.", "wrangler.toml", 20, 11),
        ("error", "LOADER assigned to multiple Worker Loader bindings.", "wrangler.toml", 27, 11),
        ("error", UNIQUE_BINDINGS, "wrangler.toml", 10, 11),
    ]  # fmt: skip
    assert {d.code for d in report.diagnostics} == {"wrangler.bindings.duplicate-name"}


def test_validate_config_two_kinds_read_as_english_pair(tmp_path: Path) -> None:
    _toml_project(
        tmp_path,
        '[[worker_loaders]]\nbinding = "X"\n\n'
        '[[workflows]]\nname = "w"\nbinding = "X"\nclass_name = "DynamicWorkflow"\n',
    )
    messages = [d.message for d in validate_config(tmp_path).errors]
    assert messages == ["X assigned to Workflow and Worker Loader bindings.", UNIQUE_BINDINGS]


def test_validate_config_env_sections_warn_but_stay_valid() -> None:
    report = validate_config(CONFIGS / "env_warnings_toml")
    assert report.valid
    assert _rows(report) == [
        ("warning", '"workflows[1]" has a step limit of 50000, which exceeds the production '
         "maximum of 25,000. This configuration may not work when deployed.",
         "wrangler.toml", 19, 9),
        ("warning", 'There is a workflows binding with name "BILLING" at the top level, but not '
         'on "env.staging".\nThis is not what you probably want, since "workflows" '
         'configuration is not inherited by environments.\nPlease add a binding for "BILLING" '
         'to "env.staging.workflows.bindings".', "wrangler.toml", 24, 1),
        ("warning", '"worker_loaders" exists at the top level, but not on "env.staging".\nThis '
         'is not what you probably want, since "worker_loaders" is not inherited by '
         'environments.\nPlease add "worker_loaders" to "env.staging".', "wrangler.toml", 21, 1),
    ]  # fmt: skip


def test_validate_config_env_entries_use_env_field_paths(tmp_path: Path) -> None:
    _toml_project(
        tmp_path,
        '[env.prod]\nworker_loaders = 3\n\n[[env.prod.workflows]]\nname = "w"\n'
        'class_name = "DynamicWorkflow"\n',
    )
    assert _rows(validate_config(tmp_path)) == [
        ("error", '"env.prod.workflows[0]" bindings should have a string "binding" field but '
         'got {"name":"w","class_name":"DynamicWorkflow"}.', "wrangler.toml", 8, 1),
        ("error", 'The field "env.prod.worker_loaders" should be an array but got 3.',
         "wrangler.toml", 6, 18),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("steps", "shown"), [("1.5", "1.5"), ("true", "true"), ('"10"', '"10"'), ("-3", "-3")]
)
def test_validate_config_step_limit_must_be_positive_integer(
    tmp_path: Path, steps: str, shown: str
) -> None:
    _toml_project(
        tmp_path,
        f'[[workflows]]\nname = "w"\nbinding = "W"\nclass_name = "DynamicWorkflow"\n'
        f"limits = {{ steps = {steps} }}\n",
    )
    assert _rows(validate_config(tmp_path)) == [
        ("error", '"workflows[0]" bindings "limits.steps" field must be a positive integer but '
         f"got {shown}.", "wrangler.toml", 9, 20),
    ]  # fmt: skip


def test_validate_config_step_limit_at_production_maximum_is_silent(tmp_path: Path) -> None:
    _toml_project(
        tmp_path,
        '[[workflows]]\nname = "w"\nbinding = "W"\nclass_name = "DynamicWorkflow"\n'
        "limits = { steps = 25000 }\n",
    )
    assert validate_config(tmp_path).diagnostics == ()


def test_validate_config_integral_float_steps_count_as_integer_like_javascript(
    tmp_path: Path,
) -> None:
    _toml_project(
        tmp_path,
        '[[workflows]]\nname = "w"\nbinding = "W"\nclass_name = "DynamicWorkflow"\n'
        "limits = { steps = 30000.0 }\n",
    )
    (warning,) = validate_config(tmp_path).diagnostics
    assert warning.message.startswith('"workflows[0]" has a step limit of 30000, which')


def test_validate_config_workflow_name_longer_than_64_is_invalid(tmp_path: Path) -> None:
    _toml_project(
        tmp_path,
        f'[[workflows]]\nname = "{"a" * 65}"\nbinding = "W"\nclass_name = "DynamicWorkflow"\n',
    )
    (error,) = validate_config(tmp_path).diagnostics
    assert (
        error.message == f'"workflows[0]" binding "name" field is invalid. {WORKFLOW_NAME_FORMAT}'
    )
    assert (error.line, error.column) == (6, 8)


def test_validate_config_workflows_not_an_array(tmp_path: Path) -> None:
    _toml_project(tmp_path, '[workflows]\nname = "w"\n')
    (error,) = validate_config(tmp_path).diagnostics
    assert error.message == 'The field "workflows" should be an array but got {"name":"w"}.'
    assert (error.line, error.column, error.code) == (5, 1, "wrangler.workflows.not-array")


# -- dynwf's own checks ----------------------------------------------------------------


def test_validate_config_python_checks_toml() -> None:
    report = validate_config(CONFIGS / "python_checks_toml")
    rows = _rows(report)
    future = rows.pop(5)
    assert future[0] == "error"
    assert future[1].startswith('"env.future.compatibility_date" 2999-01-01 is in the future')
    assert future[2:] == ("wrangler.toml", 28, 22)
    assert rows == [
        ("error", PYTHON_FLAG, "wrangler.toml", 4, 23),
        ("warning", 'There is a workflows binding with name "PLAIN" at the top level, but not '
         'on "env.future".\nThis is not what you probably want, since "workflows" '
         'configuration is not inherited by environments.\nPlease add a binding for "PLAIN" to '
         '"env.future.workflows.bindings".', "wrangler.toml", 31, 1),
        ("warning", 'There is a workflows binding with name "FUNC" at the top level, but not '
         'on "env.future".\nThis is not what you probably want, since "workflows" '
         'configuration is not inherited by environments.\nPlease add a binding for "FUNC" to '
         '"env.future.workflows.bindings".', "wrangler.toml", 31, 1),
        ("warning", 'There is a workflows binding with name "REMOTE" at the top level, but not '
         'on "env.future".\nThis is not what you probably want, since "workflows" '
         'configuration is not inherited by environments.\nPlease add a binding for "REMOTE" '
         'to "env.future.workflows.bindings".', "wrangler.toml", 31, 1),
        ("error", '"compatibility_date" 2024-01-15 is too early: Workflows need a '
         "compatibility_date of 2024-10-22 or later.", "wrangler.toml", 3, 22),
        ("error", '"workflows[0]" class_name "NotThere" is not defined in src/entry.py; define '
         "it there, or set script_name if it lives in another Worker.", "wrangler.toml", 9, 14),
        ("error", '"workflows[1]" class_name "PlainClass" (src/entry.py:4) is not a '
         "WorkflowEntrypoint subclass; define it as `class PlainClass(WorkflowEntrypoint)` "
         "with `from workers import WorkflowEntrypoint`.", "wrangler.toml", 14, 14),
        ("error", '"workflows[2]" class_name "helper" in src/entry.py is not a class; define '
         "it as `class helper(WorkflowEntrypoint)` with `from workers import "
         "WorkflowEntrypoint`.", "wrangler.toml", 19, 14),
        ("error", '"env.future.workflows[0]" class_name "NotThere" is not defined in '
         "src/entry.py; define it there, or set script_name if it lives in another Worker.",
         "wrangler.toml", 34, 14),
        ("error", 'env.TENANTS is used as a Worker Loader in src/entry.py but "TENANTS" is not '
         'declared in "worker_loaders"; add [[worker_loaders]] binding = "TENANTS" in '
         "wrangler.toml.", "entry.py", 14, 16),
    ]  # fmt: skip
    assert "(today is " in future[1]
    codes = [d.code for d in report.diagnostics if d.code.startswith("dynwf.")]
    assert codes == [
        "dynwf.compatibility-date.workflows-minimum",
        "dynwf.compatibility-date.future",
        "dynwf.workflows.class-missing",
        "dynwf.workflows.class-not-workflow",
        "dynwf.workflows.class-not-workflow",
        "dynwf.workflows.class-missing",
        "dynwf.worker-loaders.undeclared",
    ]


def test_validate_config_python_checks_jsonc() -> None:
    report = validate_config(CONFIGS / "python_checks_jsonc")
    assert _rows(report) == [
        ("error", '"compatibility_date" field should be a valid ISO-8601 date (YYYY-MM-DD), '
         'but got "2026-02-30".', "wrangler.jsonc", 4, 25),
        ("error", PYTHON_FLAG, "wrangler.jsonc", 3, 11),
        ("error", '"workflows[0]" class_name "Missing" is not defined in src/entry.py; define '
         "it there, or set script_name if it lives in another Worker.",
         "wrangler.jsonc", 6, 59),
        ("error", 'env.CODE_LOADER is used as a Worker Loader in src/entry.py but "CODE_LOADER" '
         'is not declared in "worker_loaders"; add {"binding": "CODE_LOADER"} to '
         '"worker_loaders" in wrangler.jsonc.', "entry.py", 6, 18),
    ]  # fmt: skip
    assert report.diagnostics[-1].file == str(CONFIGS / "python_checks_jsonc" / "src" / "entry.py")


def test_validate_config_loader_get_with_code_callback_needs_worker_loaders(
    tmp_path: Path,
) -> None:
    entry = GOOD_ENTRY + (
        "\n\nasync def handle(env):\n"
        '    await env.WORKFLOWS.get("instance-id")\n'
        '    return env.SANDBOX.get("tenant-a", lambda: {"mainModule": "t.py"})\n'
    )
    _toml_project(
        tmp_path,
        '[[workflows]]\nname = "w"\nbinding = "WORKFLOWS"\nclass_name = "DynamicWorkflow"\n',
        entry=entry,
    )
    (error,) = validate_config(tmp_path).diagnostics
    assert error.code == "dynwf.worker-loaders.undeclared"
    assert error.message.startswith("env.SANDBOX is used as a Worker Loader in src/entry.py but")
    assert (Path(error.file).name, error.line, error.column) == ("entry.py", 11, 12)


def test_validate_config_import_error_points_at_raising_line() -> None:
    (error,) = validate_config(CONFIGS / "import_error").diagnostics
    assert error.message == "Importing src/entry.py failed: RuntimeError: DATABASE_URL is not set"
    assert (error.file, error.line, error.column) == (
        str(CONFIGS / "import_error" / "src" / "settings.py"),
        5,
        5,
    )
    assert error.code == "dynwf.main.import-error"


def test_validate_config_missing_module_points_at_import_line(tmp_path: Path) -> None:
    _toml_project(tmp_path, "", entry='"""Doc."""\n\nimport not_a_real_module_dynwf\n')
    (error,) = validate_config(tmp_path).diagnostics
    assert error.message == (
        "Importing src/entry.py failed: ModuleNotFoundError: No module named "
        "'not_a_real_module_dynwf'"
    )
    assert (Path(error.file).name, error.line, error.column) == ("entry.py", 3, 1)


def test_validate_config_syntax_error_points_at_file_line_column(tmp_path: Path) -> None:
    entry = "from workers import WorkflowEntrypoint\n\n\ndef broken(:\n    pass\n"
    _toml_project(tmp_path, "", entry=entry)
    (error,) = validate_config(tmp_path).diagnostics
    assert error.message.startswith("Importing src/entry.py failed: SyntaxError: ")
    assert (Path(error.file).name, error.line, error.column) == ("entry.py", 4, 12)


def test_validate_config_imports_main_in_a_separate_process() -> None:
    path_before = list(sys.path)
    validate_config(CONFIGS / "good_toml")
    assert "dynwf_fixture_marker" not in sys.modules
    assert "helpers" not in sys.modules
    assert sys.path == path_before


def test_validate_config_future_and_missing_dates(tmp_path: Path) -> None:
    tomorrow = date.today() + timedelta(days=2)
    _write(tmp_path / "a", {"wrangler.toml": f'main = "x.js"\ncompatibility_date = "{tomorrow}"\n'})
    rows = _rows(validate_config(tmp_path / "a"))
    assert rows[0][1].startswith(f'"compatibility_date" {tomorrow} is in the future')
    assert rows[0][3:] == (2, 22)
    assert rows[1][1] == (
        '"main" is "x.js", but dynwf runs Python Workers only; point "main" at a .py module.'
    )
    _write(tmp_path / "b", {"wrangler.toml": 'name = "b"\n'})
    codes = [d.code for d in validate_config(tmp_path / "b").diagnostics]
    assert codes == ["dynwf.compatibility-date.missing", "dynwf.main.missing"]


def test_validate_config_type_errors_use_wrangler_wording(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "wrangler.jsonc": '{"name": "Bad_Name", "main": 5, "compatibility_date": 20260401,\n'
            ' "compatibility_flags": "python_workers", "limits": {"cpu_ms": "50"}}'
        },
    )
    messages = [d.message for d in validate_config(tmp_path).diagnostics]
    assert messages[:5] == [
        'Expected "compatibility_date" to be of type string but got 20260401.',
        'Expected "compatibility_flags" to be of type string array but got "python_workers".',
        'Expected "name" to be of type string, alphanumeric and lowercase with dashes only but '
        'got "Bad_Name".',
        'Expected "main" to be of type string but got 5.',
        'Expected "limits.cpu_ms" to be of type number but got "50".',
    ]


# -- parsing -----------------------------------------------------------------------------


def test_validate_config_unparseable_toml_raises_with_parser_position() -> None:
    with pytest.raises(ConfigFileError) as caught:
        validate_config(CONFIGS / "unparseable_toml")
    assert isinstance(caught.value, ConfigError)
    assert (caught.value.line, caught.value.column) == (2, 8)
    assert str(caught.value).endswith("wrangler.toml:2:8: invalid TOML: Invalid value")


def test_validate_config_unparseable_jsonc_raises_with_parser_position() -> None:
    with pytest.raises(ConfigFileError) as caught:
        validate_config(CONFIGS / "unparseable_jsonc")
    assert (caught.value.line, caught.value.column) == (5, 3)
    assert caught.value.reason == "invalid JSON: expected ',' or '}', found '\"'"


@pytest.mark.parametrize(
    ("text", "line", "column", "reason"),
    [
        ("", 1, 1, "the file is empty; expected an object"),
        ('{\n  "a": /* never closed\n}', 2, 8, "unterminated /* comment"),
        ('{"a": tru}', 1, 7, "unexpected 't'; expected a value"),
        ('{"a": "x\ny"}', 1, 9, "unterminated string"),
        ('{"a": 01}', 1, 8, "expected ',' or '}', found '1'"),
        ("{a: 1}", 1, 2, "expected a property name in double quotes, found 'a'"),
        ("[1, 2]", 1, 1, None),
    ],
)
def test_parse_jsonc_errors_carry_line_and_column(
    tmp_path: Path, text: str, line: int, column: int, reason: str | None
) -> None:
    _write(tmp_path, {"wrangler.json": text})
    with pytest.raises(ConfigFileError) as caught:
        validate_config(tmp_path)
    assert (caught.value.line, caught.value.column) == (line, column)
    if reason is not None:
        assert caught.value.reason == f"invalid JSON: {reason}"
    else:
        assert caught.value.reason == "the top level must be an object, but got [1,2]"


def test_parse_jsonc_keeps_comment_markers_inside_strings(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "wrangler.jsonc": '{\n  "name": "a//b/*c*/", // real comment\n'
            '  "vars": {"U": "\\u00e9\\ud83d\\ude00\\n\\"q\\"",},\n}\n'
        },
    )
    from dynwf.config._jsonc import parse_jsonc

    path = tmp_path / "wrangler.jsonc"
    root = parse_jsonc(path.read_text(), path)
    assert root.value == {"name": "a//b/*c*/", "vars": {"U": 'é😀\n"q"'}}
    name = root.get("name")
    assert name is not None and (name.location.line, name.location.column) == (2, 11)
    assert (root.key_location("vars").line, root.key_location("vars").column) == (3, 3)


def test_parse_toml_positions_for_inline_tables_and_tricky_strings(tmp_path: Path) -> None:
    from dynwf.config._toml import parse_toml

    text = (
        'desc = """\n[[workflows]]\nname = "not real"\n"""\n'
        "'quoted.key' = 1\n"
        "[[workflows]]\n"
        'name = "real"  # comment\n'
        "limits = { steps = [1, { deep = 2 }] }\n"
        "[workflows.limits2]\n"
        "a.b = 3\n"
    )
    root = parse_toml(text, tmp_path / "wrangler.toml")
    workflows = root.get("workflows")
    assert workflows is not None and len(workflows.items) == 1
    entry = workflows.items[0]
    assert entry.location.line == 6
    assert entry.at("name").line == 7 and entry.at("name").column == 8
    limits = entry.get("limits")
    assert limits is not None
    steps = limits.get("steps")
    assert steps is not None and (steps.location.line, steps.location.column) == (8, 20)
    deep = steps.items[1].get("deep")
    assert deep is not None and (deep.location.line, deep.location.column) == (8, 33)
    limits2 = entry.get("limits2")
    assert limits2 is not None and limits2.location.line == 9
    assert root.key_location("quoted.key").line == 5
    b = limits2.get("a")
    assert b is not None and b.at("b").line == 10 and b.at("b").column == 7


def test_js_json_prints_like_javascript() -> None:
    from dynwf.config._source import js_json

    assert js_json({"a": 1.0, "b": [True, None, 1.5], "c": "é"}) == (
        '{"a":1,"b":[true,null,1.5],"c":"é"}'
    )


# -- finding the file --------------------------------------------------------------------


def test_find_config_prefers_toml_then_jsonc_then_json(tmp_path: Path) -> None:
    _write(tmp_path, {"wrangler.json": "{}", "wrangler.jsonc": "{}"})
    assert find_config(tmp_path).name == "wrangler.jsonc"
    _write(tmp_path, {"wrangler.toml": ""})
    assert find_config(tmp_path).name == "wrangler.toml"
    (tmp_path / "wrangler.toml").unlink()
    (tmp_path / "wrangler.jsonc").unlink()
    assert find_config(tmp_path).name == "wrangler.json"


def test_find_config_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigFileError, match=r"no wrangler\.toml, wrangler\.jsonc, wrangler\.json"
    ):
        find_config(tmp_path)
    with pytest.raises(ConfigFileError, match="does not exist"):
        find_config(tmp_path / "nope.toml")
    _write(tmp_path, {"config.yaml": ""})
    with pytest.raises(ConfigFileError, match="unsupported config file type"):
        find_config(tmp_path / "config.yaml")


def test_config_public_surface_is_pinned() -> None:
    assert dynwf.config.__all__ == [
        "CONFIG_FILE_NAMES",
        "PORTABILITY_RULES",
        "ConfigFileError",
        "Cron",
        "CronError",
        "Diagnostic",
        "InvalidConfigError",
        "Location",
        "PortabilityRule",
        "ProjectConfig",
        "Severity",
        "ValidationReport",
        "WorkerLoaderConfig",
        "WorkflowConfig",
        "check_portability",
        "find_config",
        "load_config",
        "parse_cron",
        "read_config",
        "validate_config",
        "validate_project",
    ]


# -- the CLI -----------------------------------------------------------------------------


def _dynwf(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env["NO_COLOR"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "dynwf", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_cli_validate_valid_project_exits_0() -> None:
    done = _dynwf("validate", cwd=CONFIGS / "good_toml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "wrangler.toml is valid (0 errors, 0 warnings)" in done.stdout


def test_cli_validate_warnings_only_exits_0() -> None:
    done = _dynwf("validate", "--config", str(CONFIGS / "env_warnings_toml" / "wrangler.toml"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "▲ [WARNING] Processing wrangler configuration:" in done.stdout
    assert '  - "worker_loaders" exists at the top level, but not on "env.staging".' in done.stdout
    assert "(0 errors, 3 warnings)" in done.stdout


def test_cli_validate_invalid_project_exits_1_with_locations() -> None:
    done = _dynwf("validate", cwd=CONFIGS / "bad_workflows_jsonc")
    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout
    assert "✘ [ERROR] Processing wrangler configuration:" in out
    assert f'  - "workflows[0]" binding "name" field is invalid. {WORKFLOW_NAME_FORMAT}' in out
    assert "    at wrangler.jsonc:8:15" in out
    assert "wrangler.jsonc is invalid (10 errors, 3 warnings)" in out


def test_cli_validate_missing_config_exits_2(tmp_path: Path) -> None:
    done = _dynwf("validate", "--config", str(tmp_path / "wrangler.toml"))
    assert done.returncode == 2
    assert "config file does not exist" in done.stderr
    assert done.stdout == ""


def test_cli_validate_unparseable_config_exits_2_with_position() -> None:
    done = _dynwf("validate", cwd=CONFIGS / "unparseable_jsonc")
    assert done.returncode == 2
    assert "wrangler.jsonc:5:3: invalid JSON: expected ',' or '}'" in done.stderr


def test_cli_validate_json_output_is_stable() -> None:
    done = _dynwf("validate", "--json", "--config", str(CONFIGS / "python_checks_jsonc"))
    assert done.returncode == 1, done.stderr
    payload = json.loads(done.stdout)
    assert payload["valid"] is False
    assert payload["config"] == str(CONFIGS / "python_checks_jsonc" / "wrangler.jsonc")
    first = payload["diagnostics"][0]
    assert first == {
        "severity": "error",
        "message": '"compatibility_date" field should be a valid ISO-8601 date (YYYY-MM-DD), '
        'but got "2026-02-30".',
        "file": str(CONFIGS / "python_checks_jsonc" / "wrangler.jsonc"),
        "line": 4,
        "column": 25,
        "code": "wrangler.compatibility-date.format",
        "portable": None,
    }
    assert [d["code"] for d in payload["diagnostics"]][1:] == [
        "wrangler.python-workers-flag",
        "dynwf.workflows.class-missing",
        "dynwf.worker-loaders.undeclared",
    ]


def test_cli_validate_json_valid_and_unparseable() -> None:
    good = _dynwf("validate", "--json", cwd=CONFIGS / "good_jsonc")
    assert good.returncode == 0
    assert json.loads(good.stdout) == {
        "valid": True,
        "config": str(CONFIGS / "good_jsonc" / "wrangler.jsonc"),
        "diagnostics": [],
    }
    bad = _dynwf("validate", "--json", cwd=CONFIGS / "unparseable_toml")
    assert bad.returncode == 2
    (problem,) = json.loads(bad.stdout)["diagnostics"]
    assert (problem["line"], problem["column"], problem["code"]) == (
        2,
        8,
        "dynwf.config.unreadable",
    )


def test_cli_validate_help_shows_examples() -> None:
    done = _dynwf("validate", "--help")
    assert done.returncode == 0
    assert "Examples:" in done.stdout
    assert "dynwf validate --config wrangler.jsonc" in done.stdout
    assert "--json" in done.stdout


def test_validate_config_kv_namespaces_follow_wrangler_4_86(tmp_path: Path) -> None:
    """id is optional (wrangler can provision it); binding must be a string; extras warn."""
    good = _toml_project(tmp_path / "good", '[[kv_namespaces]]\nbinding = "TENANT_CODE"\n')
    assert validate_config(good).diagnostics == ()
    bad = _toml_project(
        tmp_path / "bad",
        '[[kv_namespaces]]\nbinding = 5\nid = ""\nextra = 1\n',
    )
    whole = '{"binding":5,"id":"","extra":1}'
    assert _rows(validate_config(bad)) == [
        (
            "error",
            f'"kv_namespaces[0]" bindings should have a string "binding" field but got {whole}.',
            "wrangler.toml",
            6,
            11,
        ),
        (
            "error",
            f'"kv_namespaces[0]" bindings should have a string "id" field but got {whole}.',
            "wrangler.toml",
            7,
            6,
        ),
        (
            "warning",
            'Unexpected fields found in kv_namespaces[0] field: "extra"',
            "wrangler.toml",
            8,
            1,
        ),
    ]
