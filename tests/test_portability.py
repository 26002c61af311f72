"""dynwf validate's portability rules: each one flags its snippet at its line, its portable form passes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dynwf.config import PORTABILITY_RULES, check_portability

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "portability"
CLOUDFLARE_STYLE = FIXTURES / "cloudflare_style"

WRANGLER = """\
name = "rules"
main = "src/entry.py"
compatibility_date = "2026-04-01"
compatibility_flags = ["python_workers"]

[[worker_loaders]]
binding = "LOADER"

[[workflows]]
name = "dynamic-workflow"
binding = "WORKFLOWS"
class_name = "DynamicWorkflow"
"""

DISPATCHER = (CLOUDFLARE_STYLE / "src" / "entry.py").read_text(encoding="utf-8")

TENANT = """\
from workers import Response, WorkerEntrypoint, WorkflowEntrypoint


class TenantWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
{body}


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        return Response.json({{"ok": True}})
"""

# (rule, role, flagged, portable). The flagged snippet marks its expected line(s) with
# `# <-`; a tenant "run" snippet is the body of TenantWorkflow.run (8 spaces deep).
CASES: list[tuple[str, str, str, str]] = [
    ("dynwf-import", "dispatcher", "import dynwf.testing  # <-\n", "import json\n"),
    (
        "dynwf-import",
        "tenant",
        "from dynwf.workers import WorkflowEntrypoint  # <-\n",
        "from workers import WorkflowEntrypoint\n",
    ),
    (
        "workers-name",
        "tenant",
        "from workers.workflows import NonRetryableError, WorkflowTimeoutError  # <-\n",
        "from workers.workflows import NonRetryableError\n",
    ),
    (
        "workers-name",
        "tenant",
        "import workers.workflows\n\nERRORS = (workers.workflows.WorkflowTimeoutError,)  # <-\n",
        "import workers.workflows\n\nERRORS = (workers.workflows.NonRetryableError,)\n",
    ),
    (
        "event-attribute",
        "run",
        "        order = event.payload  # <-\n        return order\n",
        '        order = event["payload"]\n        return order\n',
    ),
    (
        "event-key",
        "run",
        '        return {"wf": event["workflowName"]}  # <-\n',
        '        return {"wf": event["payload"]["workflow"]}\n',
    ),
    (
        "event-key",
        "run",
        '        return event.get("schedule")  # <-\n',
        '        return event.get("payload")\n',
    ),
    (
        "event-timestamp-tz",
        "run",
        "        from datetime import UTC, datetime\n"
        '        started = event["timestamp"]\n'
        "        return (datetime.now(UTC) - started).total_seconds()  # <-\n",
        "        from datetime import datetime\n"
        '        started = event["timestamp"]\n'
        "        return (datetime.now() - started).total_seconds()\n",
    ),
    (
        "step-do-bare",
        "run",
        "        @step.do  # <-\n        async def charge():\n            return 1\n\n"
        "        return await charge()\n",
        "        @step.do()\n        async def charge():\n            return 1\n\n"
        "        return await charge()\n",
    ),
    (
        "step-do-bare",
        "tenant",
        "async def helper(step):\n    @step.do  # <-\n    async def ping():\n        return 1\n\n"
        "    return await ping()\n",
        "async def helper(step):\n    @step.do()\n    async def ping():\n        return 1\n\n"
        "    return await ping()\n",
    ),
    (
        "step-config-key",
        "run",
        '        @step.do("charge", config={"retries": {"limit": 3,\n'
        '                                              "jitter": True},  # <-\n'
        '                                   "retry_after": "1 second"})  # <-\n'
        "        async def charge():\n            return 1\n\n        return await charge()\n",
        '        @step.do("charge", config={"retries": {"limit": 3, "delay": "1 second",\n'
        '                                              "backoff": "linear"},\n'
        '                                   "timeout": "1 minute", "sensitive": "output"})\n'
        "        async def charge():\n            return 1\n\n        return await charge()\n",
    ),
    (
        "step-error-class",
        "run",
        "        @step.do()\n        async def charge():\n            return 1\n\n"
        "        try:\n            return await charge()\n"
        "        except KeyError:  # <-\n            return None\n",
        "        @step.do()\n        async def charge():\n            return 1\n\n"
        "        try:\n            return await charge()\n"
        "        except (ValueError, TypeError):\n            return None\n",
    ),
    (
        "run-sync",
        "tenant",
        "from workers import WorkflowEntrypoint\n\n\nclass Flow(WorkflowEntrypoint):\n"
        "    def run(self, event, step):  # <-\n        return None\n",
        "from workers import WorkflowEntrypoint\n\n\nclass Flow(WorkflowEntrypoint):\n"
        "    async def run(self, event, step):\n        return None\n",
    ),
    (
        "response-status-text",
        "tenant",
        "from workers import Response\n\n\ndef reply():\n"
        '    return Response("no", 404, {"X-Why": "gone"})  # <-\n',
        "from workers import Response\n\n\ndef reply():\n"
        '    return Response("no", status=404, headers={"X-Why": "gone"})\n',
    ),
    (
        "host-file",
        "run",
        '        rates = open("rates.json").read()  # <-\n        return rates\n',
        "        import rates\n        return rates.RATES\n",
    ),
    (
        "host-process",
        "tenant",
        'import subprocess  # <-\n\nOUT = subprocess.run(["true"])\n',
        "OUT = None\n",
    ),
    ("host-process", "tenant", "import os\n\nos.kill(1, 9)  # <-\n", "import os\n\nos.sep\n"),
    (
        "host-thread",
        "tenant",
        "import threading\n\nthreading.Thread(target=print).start()  # <-\n",
        "import threading\n\nLOCK = threading.Lock()\n",
    ),
    (
        "host-thread",
        "dispatcher",
        "from concurrent.futures import ThreadPoolExecutor as Pool\n\nPOOL = Pool(4)  # <-\n",
        "from concurrent.futures import Future\n\nPENDING = Future()\n",
    ),
    (
        "host-thread",
        "run",
        "        import asyncio\n        return await asyncio.to_thread(sum, [1])  # <-\n",
        "        import asyncio\n        return await asyncio.sleep(0, sum([1]))\n",
    ),
    (
        "host-thread",
        "run",
        "        import asyncio\n        loop = asyncio.get_running_loop()\n"
        "        return await loop.run_in_executor(None, sum, [1])  # <-\n",
        "        import asyncio\n        return sum([1])\n",
    ),
    (
        "host-env",
        "tenant",
        'import os\n\nKEY = os.environ["API_KEY"]  # <-\n',
        'import os\n\nKEY = os.path.join("a", "b")\n',
    ),
    ("outbound-http", "tenant", "import requests  # <-\n", "from workers import fetch\n"),
    (
        "outbound-http",
        "tenant",
        "from urllib.request import urlopen  # <-\n",
        "from urllib.parse import quote\n",
    ),
    ("outbound-http", "tenant", "import socket  # <-\n", "import json\n"),
    (
        "get-entrypoint",
        "dispatcher",
        DISPATCHER.replace(
            'return stub.getEntrypoint("TenantWorkflow")',
            'return stub.get_entrypoint("TenantWorkflow")  # <-',
        ),
        DISPATCHER,
    ),
    (
        "forward-request",
        "dispatcher",
        DISPATCHER.replace(
            "return await stub.getEntrypoint().fetch(request.js_object)",
            "return await stub.getEntrypoint().fetch(request)  # <-",
        ),
        DISPATCHER,
    ),
    (
        "wrap-binding-args",
        "dispatcher",
        DISPATCHER.replace(
            '"env": {"WORKFLOWS": wrap_workflow_binding({"tenantId": tenant})},',
            '"env": {"WORKFLOWS": wrap_workflow_binding({"tenantId": tenant}, env=env)},  # <-',
        ),
        DISPATCHER,
    ),
    (
        "dispatch-workflow-args",
        "dispatcher",
        DISPATCHER.replace(
            "DynamicWorkflow = create_dynamic_workflow_entrypoint(load_runner)",
            "from dynamic_workflows import dispatch_workflow\nfrom workers import WorkflowEntrypoint\n\n\n"
            "class DynamicWorkflow(WorkflowEntrypoint):\n    async def run(self, event, step):\n"
            "        return await dispatch_workflow(self.env, self.ctx, event, step, load_runner)  # <-",
        ),
        DISPATCHER.replace(
            "DynamicWorkflow = create_dynamic_workflow_entrypoint(load_runner)",
            "from dynamic_workflows import dispatch_workflow\nfrom workers import WorkflowEntrypoint\n\n\n"
            "class DynamicWorkflow(WorkflowEntrypoint):\n    async def run(self, event, step):\n"
            "        return await dispatch_workflow(env=self.env, ctx=self.ctx, event=event, step=step, "
            "load_runner=load_runner)",
        ),
    ),
    (
        "entrypoint-class-name",
        "dispatcher",
        DISPATCHER.replace(
            "DynamicWorkflow = create_dynamic_workflow_entrypoint(load_runner)",
            'DynamicWorkflow = create_dynamic_workflow_entrypoint(load_runner, class_name="Flow")  # <-',
        ),
        DISPATCHER.replace(
            "DynamicWorkflow = create_dynamic_workflow_entrypoint(load_runner)",
            'DynamicWorkflow = create_dynamic_workflow_entrypoint(load_runner, class_name="DynamicWorkflow")',
        ),
    ),
    (
        "binding-not-exported",
        "dispatcher",
        DISPATCHER.replace("    DynamicWorkflowBinding,\n", "")
        .replace(
            "    create_dynamic_workflow_entrypoint,\n    wrap_workflow_binding,\n",
            "    create_dynamic_workflow_entrypoint,\n    wrap_workflow_binding,  # <-\n",
        )
        .replace('__all__ = ["Default", "DynamicWorkflow", "DynamicWorkflowBinding"]', ""),
        DISPATCHER,
    ),
    (
        "binding-not-exported",
        "dispatcher",
        DISPATCHER.replace(
            '__all__ = ["Default", "DynamicWorkflow", "DynamicWorkflowBinding"]',
            '__all__ = ["Default", "DynamicWorkflow"]  # <-',
        ),
        DISPATCHER,
    ),
    (
        "loader-callback",
        "dispatcher",
        DISPATCHER.replace(
            "return env.LOADER.get(f\"{tenant}:{manifest['version']}\", create_proxy(get_code))",
            "return env.LOADER.get(f\"{tenant}:{manifest['version']}\", get_code)  # <-",
        ),
        DISPATCHER,
    ),
    (
        "loader-code-to-js",
        "dispatcher",
        DISPATCHER.replace(
            "        return to_js(\n            {\n",
            "        return (\n            {  # <-\n",
        ).replace(
            "            },\n            dict_converter=Object.fromEntries,\n        )",
            "            }\n        )",
        ),
        DISPATCHER,
    ),
    (
        "outside-upload",
        "dispatcher",
        DISPATCHER.replace(
            "import json\n",
            'import json\nfrom pathlib import Path\n\nTENANTS = Path(__file__).parent.parent / "tenants"  # <-\n',
        ),
        DISPATCHER.replace(
            "import json\n",
            "import json\nfrom pathlib import Path\n\nHERE = Path(__file__).parent\n",
        ),
    ),
    (
        "instance-handle-attribute",
        "tenant",
        "async def start(env, order_id):\n"
        '    instance = await env.WORKFLOWS.create({"id": order_id, "params": {}})\n'
        "    return instance.id  # <-\n"
        "\n\n"
        "async def _find(env, order_id):\n"
        "    return await env.WORKFLOWS.get(order_id)\n"
        "\n\n"
        "async def pause(env, order_id):\n"
        "    instance = await _find(env, order_id)\n"
        "    await instance.pause()  # <-\n",
        "async def start(env, order_id):\n"
        '    instance = await env.WORKFLOWS.create({"id": order_id, "params": {}})\n'
        '    return instance["id"], instance.get("id")\n'
        "\n\n"
        "async def _find(env, order_id):\n"
        "    return await env.WORKFLOWS.get(order_id)\n"
        "\n\n"
        "async def pause(env, order_id):\n"
        "    instance = await _find(env, order_id)\n"
        '    await instance["pause"]()\n',
    ),
    (
        "tenant-binding-method",
        "tenant",
        "async def start(env, ids):\n"
        '    await env.WORKFLOWS.create_batch([{"id": i} for i in ids])  # <-\n'
        '    await env.WORKFLOWS.createBatch({"count": 2})  # <-\n'
        "    await env.WORKFLOWS.deleteBatch(ids)  # <-\n",
        "async def start(env, ids):\n"
        '    await env.WORKFLOWS.createBatch([{"id": i} for i in ids])\n'
        "    await env.CACHE.delete(ids[0])\n",
    ),
    (
        "instance-handle-result",
        "tenant",
        "async def status(env, order_id):\n"
        "    instance = await env.WORKFLOWS.get(order_id)\n"
        '    status = await instance["status"]()\n'
        '    state = status["status"]  # <-\n'
        "    return state, {**status}  # <-\n"
        "\n\n"
        "async def output(env, order_id):\n"
        "    instance = await env.WORKFLOWS.get(order_id)\n"
        '    return (await instance["status"]()).get("output")  # <-\n',
        "from workers import python_from_rpc\n"
        "\n\n"
        "async def status(env, order_id):\n"
        "    instance = await env.WORKFLOWS.get(order_id)\n"
        '    status = python_from_rpc(await instance["status"]())\n'
        '    return status["status"], {**status}\n'
        "\n\n"
        "async def output(env, order_id):\n"
        "    instance = await env.WORKFLOWS.get(order_id)\n"
        '    return python_from_rpc(await instance["status"]()).get("output")\n',
    ),
    (
        "send-event-arg",
        "tenant",
        "from pyodide.ffi import to_js\n"
        "\n\n"
        "async def decide(env, order_id, payload):\n"
        "    instance = await env.WORKFLOWS.get(order_id)\n"
        '    await instance["sendEvent"]({"type": "decision", "payload": payload})  # <-\n'
        '    await instance["sendEvent"](to_js({"type": "decision", "payload": payload}))  # <-\n',
        "from js import Object\n"
        "from pyodide.ffi import to_js\n"
        "\n\n"
        "async def decide(env, order_id, payload):\n"
        "    instance = await env.WORKFLOWS.get(order_id)\n"
        '    event = {"type": "decision", "payload": payload}\n'
        '    await instance["sendEvent"](to_js(event, dict_converter=Object.fromEntries))\n',
    ),
    (
        "wait-for-event-result",
        "run",
        '        got = await step.wait_for_event("approval", "approved", timeout="1 day")\n'
        '        by = got["payload"]  # <-\n'
        '        note = got.payload.get("note")  # <-\n'
        '        again = (await step.wait_for_event("again", "approved"))["payload"]  # <-\n'
        '        return {**got, "by": by, "note": note, "again": again}  # <-\n',
        "        from workers import python_from_rpc\n"
        "\n"
        '        got = await step.wait_for_event("approval", "approved", timeout="1 day")\n'
        "        by = got.payload\n"
        "        got = python_from_rpc(got)\n"
        '        again = python_from_rpc(await step.wait_for_event("again", "approved"))["payload"]\n'
        '        return {**got, "by": by, "note": got["payload"].get("note"), "again": again}\n',
    ),
]


def _project(tmp_path: Path, role: str, source: str) -> tuple[Path, Path]:
    """A project whose dispatcher or tenant module is ``source``; returns (root, that file)."""
    tenant = TENANT.format(body='        return event["payload"]')
    if role == "run":
        tenant, source = TENANT.format(body=source.rstrip("\n")), ""
    elif role == "tenant":
        tenant, source = source, ""
    files = {
        "wrangler.toml": WRANGLER,
        "src/entry.py": source or DISPATCHER,
        "tenants/t/worker.py": tenant,
        "tenants/t/rates.py": "RATES = {}\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    target = "src/entry.py" if role == "dispatcher" else "tenants/t/worker.py"
    return tmp_path, tmp_path / target


def _marked_lines(path: Path) -> list[int]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [number for number, line in enumerate(lines, 1) if line.rstrip().endswith("# <-")]


@pytest.mark.parametrize(
    ("rule", "role", "flagged", "portable"),
    CASES,
    ids=[f"{rule}-{i}" for i, (rule, *_rest) in enumerate(CASES)],
)
def test_portability_rule_flags_its_line_and_passes_the_portable_form(
    tmp_path: Path, rule: str, role: str, flagged: str, portable: str
) -> None:
    root, target = _project(tmp_path / "bad", role, flagged)
    report = check_portability(root)
    found = [d for d in report.diagnostics if d.code == f"dynwf.portability.{rule}"]
    assert [(Path(d.file), d.line) for d in found] == [(target, n) for n in _marked_lines(target)]
    others = [d.code for d in report.diagnostics if d not in found]
    assert others == []
    expected = PORTABILITY_RULES[rule]
    assert all(d.severity == expected.severity and d.portable == expected.portable for d in found)
    assert all(d.column >= 1 for d in found)

    root, _ = _project(tmp_path / "good", role, portable)
    assert check_portability(root).diagnostics == ()


def test_portability_every_rule_has_a_case() -> None:
    tested = {rule for rule, *_ in CASES} | {"shared-instance-id", "wait-for-event-args"}
    assert tested == set(PORTABILITY_RULES)


def test_portability_cloudflare_style_project_has_no_findings() -> None:
    assert check_portability(CLOUDFLARE_STYLE).diagnostics == ()


def test_portability_instance_id_reused_by_two_tenants_is_a_warning(tmp_path: Path) -> None:
    create = (
        "async def start(env):\n"
        '    await env.WORKFLOWS.create({{"id": {value!r}, "params": {{}}}})\n'
    )
    root, _ = _project(tmp_path, "tenant", create.format(value="nightly"))
    second = root / "tenants" / "u" / "worker.py"
    second.parent.mkdir()
    second.write_text(
        'async def go(binding):\n    await binding.create(id="nightly")\n', encoding="utf-8"
    )
    found = check_portability(root).diagnostics
    assert [(d.code, d.severity, Path(d.file).parent.name, d.line) for d in found] == [
        ("dynwf.portability.shared-instance-id", "warning", "t", 2),
        ("dynwf.portability.shared-instance-id", "warning", "u", 2),
    ]
    assert "'nightly' (tenants t, u)" in found[0].message

    second.write_text(
        'async def go(binding):\n    await binding.create(id="u-nightly")\n', encoding="utf-8"
    )
    assert check_portability(root).diagnostics == ()


def test_portability_wait_for_event_by_keyword_is_an_error(tmp_path: Path) -> None:
    body = '        got = await step.wait_for_event(name="approval", event_type="approved")\n        return got\n'
    root, _ = _project(tmp_path, "run", body)
    found = check_portability(root).diagnostics
    assert [(d.code, d.severity, d.line) for d in found] == [
        ("dynwf.portability.wait-for-event-args", "error", 6),
    ]


def test_portability_wait_for_event_result_not_read_as_a_dict_passes(tmp_path: Path) -> None:
    """Returned or passed on as it is, the JS object is not read here: nothing to flag."""
    body = '        got = await step.wait_for_event("approval", "approved", timeout="1 day")\n        return got\n'
    root, _ = _project(tmp_path, "run", body)
    assert check_portability(root).diagnostics == ()


def test_portability_syntax_error_is_reported_with_its_line(tmp_path: Path) -> None:
    root, target = _project(tmp_path, "tenant", "def broken(:\n    pass\n")
    found = check_portability(root).diagnostics
    assert [(d.code, d.severity, Path(d.file), d.line) for d in found] == [
        ("dynwf.portability.unreadable", "error", target, 1)
    ]


def test_portability_rules_apply_only_to_their_side(tmp_path: Path) -> None:
    """open() in the dispatcher is not a tenant's host access; get_entrypoint is flagged on both."""
    dispatcher = DISPATCHER.replace("import json\n", 'import json\n\nNOTES = open("notes.txt")\n')
    root, _ = _project(tmp_path, "dispatcher", dispatcher)
    assert check_portability(root).diagnostics == ()


def test_validate_json_carries_portability_findings(tmp_path: Path) -> None:
    root, target = _project(tmp_path, "run", "        return event.payload\n")
    done = subprocess.run(
        [sys.executable, "-m", "dynwf", "validate", "--json"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    result = json.loads(done.stdout)
    rows = [d for d in result["diagnostics"] if d["code"].startswith("dynwf.portability.")]
    assert rows == [
        {
            "severity": "error",
            "message": PORTABILITY_RULES["event-attribute"].what.format(detail="event.payload"),
            "file": str(target),
            "line": 6,
            "column": 16,
            "code": "dynwf.portability.event-attribute",
            "portable": PORTABILITY_RULES["event-attribute"].portable,
        }
    ]
    assert result["valid"] is False
    assert done.returncode == 1
