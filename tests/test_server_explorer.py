"""The explorer API against wrangler 4.86's recorded answers: paths, shapes, errors."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from dynwf.errors import InstanceNotFoundError
from tests.conftest import Harness
from tests.fixtures.server_helpers import (
    API,
    EXTENSIONS,
    WF,
    api,
    captured,
    create,
    detail,
    keys,
    patch,
    same_as,
    shape,
)

__all__ = ["api"]  # the fixture, imported for pytest


# -- workflows -------------------------------------------------------------------------


async def test_workflows_list_is_wranglers_answer(api: httpx.AsyncClient) -> None:
    same_as(await api.get(WF), "workflows-list.txt")


async def test_workflows_list_ignores_a_trailing_slash(api: httpx.AsyncClient) -> None:
    same_as(await api.get(f"{WF}/"), "trailing-slash.txt")


async def test_workflow_summary_counts_every_status_in_wranglers_order(
    api: httpx.AsyncClient,
) -> None:
    same_as(await api.get(f"{WF}/probe-wf"), "workflow-get-probe.txt")


async def test_workflow_summary_counts_are_exact_at_once(
    api: httpx.AsyncClient, harness: Harness
) -> None:
    await create(api, harness, "fail-wf", {"id": "f1"})
    await harness.advance(100)
    await harness.advance(100)
    await create(api, harness, "probe-wf", {"id": "p1"})
    counts = (await api.get(f"{WF}/fail-wf")).json()["result"]["instances"]
    assert counts == {
        "complete": 0,
        "errored": 1,
        "paused": 0,
        "queued": 0,
        "running": 0,
        "terminated": 0,
        "waiting": 0,
        "waitingForPause": 0,
    }
    counts = (await api.get(f"{WF}/probe-wf")).json()["result"]["instances"]
    assert counts["waiting"] == 1 and sum(counts.values()) == 1


async def test_workflow_summary_unknown_is_404_10501(api: httpx.AsyncClient) -> None:
    same_as(await api.get(f"{WF}/nope"), "workflow-get-unknown.txt")


async def test_workflow_delete_removes_every_instance(
    api: httpx.AsyncClient, harness: Harness
) -> None:
    same_as(await api.delete(f"{WF}/nope"), "delete-workflow-unknown.txt")
    await create(api, harness, "probe-wf", {"id": "w1"})
    await create(api, harness, "probe-wf", {"id": "w2"})
    same_as(await api.delete(f"{WF}/probe-wf"), "delete-workflow-all.txt")
    listed = (await api.get(f"{WF}/probe-wf/instances")).json()
    assert listed["result"] == [] and listed["result_info"]["total_count"] == 0
    assert sum((await api.get(f"{WF}/probe-wf")).json()["result"]["instances"].values()) == 0
    assert (await api.get(f"{WF}/probe-wf/instances/w1")).status_code == 404


# -- listing instances --------------------------------------------------------------------


async def test_instances_list_empty_is_wranglers_answer(api: httpx.AsyncClient) -> None:
    same_as(await api.get(f"{WF}/probe-wf/instances"), "list-empty.txt")


async def test_instances_list_pages_newest_first_with_totals(
    api: httpx.AsyncClient, harness: Harness
) -> None:
    for n in range(7):
        await create(api, harness, "probe-wf", {"id": f"i{n}"})
        harness.clock.advance(1)
    r = await api.get(f"{WF}/probe-wf/instances", params={"page": 1, "per_page": 2})
    body = r.json()
    no_counts = EXTENSIONS | {"status_counts"}
    assert shape(body, drop=no_counts) == shape(
        captured("list-page1-per2.txt").json(), drop=no_counts
    )
    assert [i["id"] for i in body["result"]] == ["i6", "i5"]
    assert body["result"][0] == {
        "id": "i6",
        "status": "waiting",
        "created_on": "2027-01-15T08:00:00.006Z",
        "tenant": "",
    }
    assert body["result_info"] == {
        "page": 1,
        "per_page": 2,
        "total_count": 7,
        "total_pages": 4,
        "status_counts": {"waiting": 7},
    }
    page2 = (await api.get(f"{WF}/probe-wf/instances?page=2&per_page=2")).json()
    assert [i["id"] for i in page2["result"]] == ["i4", "i3"]
    last = (await api.get(f"{WF}/probe-wf/instances?page=4&per_page=2")).json()
    assert [i["id"] for i in last["result"]] == ["i0"]
    past = (await api.get(f"{WF}/probe-wf/instances?page=99&per_page=2")).json()
    assert past["result"] == [] and past["result_info"]["total_pages"] == 4
    assert past["result_info"]["page"] == 99


async def test_instances_list_filters_by_status_but_counts_the_whole_workflow(
    api: httpx.AsyncClient, harness: Harness
) -> None:
    await create(api, harness, "probe-wf", {"id": "a"})
    await create(api, harness, "probe-wf", {"id": "b"})
    assert (await patch(api, "probe-wf", "a", {"action": "pause"})).status_code == 200
    body = (await api.get(f"{WF}/probe-wf/instances?status=paused")).json()
    assert [i["id"] for i in body["result"]] == ["a"]
    assert body["result_info"]["total_count"] == 1
    assert body["result_info"]["status_counts"] == {"paused": 1, "waiting": 1}
    none = (await api.get(f"{WF}/probe-wf/instances?status=complete")).json()
    assert none["result"] == [] and none["result_info"]["total_pages"] == 1


@pytest.mark.parametrize(
    ("query", "capture"),
    [
        ("page=abc", "list-page-abc.txt"),
        ("page=0", "list-page-zero.txt"),
        ("per_page=0", "list-perpage-0.txt"),
        ("per_page=101", "list-perpage-101.txt"),
        ("status=bogus", "list-status-bad.txt"),
        ("status=", "list-status-empty.txt"),
        ("status=unknown", "list-status-unknown.txt"),
    ],
)
async def test_instances_list_bad_query_is_wranglers_400(
    api: httpx.AsyncClient, query: str, capture: str
) -> None:
    same_as(await api.get(f"{WF}/probe-wf/instances?{query}"), capture)


async def test_instances_list_reports_every_bad_query_param_at_once(
    api: httpx.AsyncClient,
) -> None:
    r = await api.get(f"{WF}/probe-wf/instances?page=1.5&per_page=101&status=x")
    assert r.status_code == 400
    messages = [e["message"] for e in r.json()["errors"]]
    assert messages[0] == "page: Expected integer, received float"
    assert messages[1] == "per_page: Number must be less than or equal to 100"
    assert messages[2].startswith("status: Invalid enum value.")


async def test_instances_list_unknown_workflow_is_404(api: httpx.AsyncClient) -> None:
    same_as(await api.get(f"{WF}/nope/instances"), "list-unknown-workflow.txt")


# -- creating -------------------------------------------------------------------------------


async def test_create_with_id_answers_the_id(api: httpx.AsyncClient, harness: Harness) -> None:
    r = await api.post(f"{WF}/probe-wf/instances", json={"id": "inst-a", "params": {"n": 2}})
    want = captured("create-with-id.txt").json()
    assert r.status_code == 200
    assert r.json() == {**want, "result": {**want["result"], "tenant": ""}}
    await harness.idle()
    assert (await detail(api, "probe-wf", "inst-a"))["params"] == {"n": 2}


@pytest.mark.parametrize("content", [b"", b"{}", b'{"params": {"n": 3}}'])
async def test_create_without_id_makes_a_uuid(
    api: httpx.AsyncClient, harness: Harness, content: bytes
) -> None:
    r = await api.post(f"{WF}/probe-wf/instances", content=content)
    assert r.status_code == 200
    id = r.json()["result"]["id"]
    assert len(id) == 36 and id.count("-") == 4
    await harness.idle()
    params = (await detail(api, "probe-wf", id))["params"]
    assert params == ({"n": 3} if content.startswith(b'{"params') else {})


async def test_create_keeps_params_of_any_json_type(
    api: httpx.AsyncClient, harness: Harness
) -> None:
    await create(api, harness, "probe-wf", {"id": "str-params", "params": "hello"})
    assert (await detail(api, "probe-wf", "str-params"))["params"] == "hello"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"this is not json", "the request body is not valid JSON: "),
        (b"[1]", "the request body must be a JSON object like"),
        (b'{"id": "x", "param": {}}', "unknown key(s) 'param' in the create body"),
        (b'{"id": "bad id!"}', "instance id 'bad id!' is invalid"),
        (b'{"id": 123}', "instance id 123 is invalid"),
        (b'{"id": "' + b"x" * 101 + b'"}', "instance id 'xxxx"),
    ],
)
async def test_create_rejects_bad_input_with_400(
    api: httpx.AsyncClient, content: bytes, message: str
) -> None:
    r = await api.post(f"{WF}/probe-wf/instances", content=content)
    assert r.status_code == 400, r.text
    (error,) = r.json()["errors"]
    assert error["code"] == 10001 and error["message"].startswith(message)
    assert (await api.get(f"{WF}/probe-wf/instances")).json()["result"] == []


async def test_create_with_an_id_in_use_is_409(api: httpx.AsyncClient, harness: Harness) -> None:
    await create(api, harness, "probe-wf", {"id": "inst-a", "params": {"n": 2}})
    r = await api.post(f"{WF}/probe-wf/instances", json={"id": "inst-a", "params": {"n": 99}})
    assert r.status_code == 409
    assert "already in use" in r.json()["errors"][0]["message"]
    assert (await detail(api, "probe-wf", "inst-a"))["params"] == {"n": 2}


async def test_create_unknown_workflow_is_404(api: httpx.AsyncClient) -> None:
    r = await api.post(f"{WF}/nope/instances", json={"id": "x"})
    same_as(r, "create-unknown-workflow.txt")


# -- instance detail ---------------------------------------------------------------------------


async def test_detail_follows_wranglers_shapes_through_a_whole_run(
    api: httpx.AsyncClient, harness: Harness
) -> None:
    await create(api, harness, "probe-wf", {"id": "inst-a", "params": {"n": 2}})
    d = await detail(api, "probe-wf", "inst-a")
    # flaky-1 failed once and waits for its retry: success null, no output key
    assert shape(d) == shape(captured("detail-running-immediate.txt").json()["result"])
    assert d["status"] == "waiting"  # wrangler says "running"; dynwf reports the real status
    flaky = d["steps"][1]
    assert (flaky["name"], flaky["success"], "output" in flaky) == ("flaky-1", None, False)
    assert flaky["attempts"][0]["error"] == {
        "name": "RuntimeError",
        "message": "flaky first attempt fails",
    }
    assert flaky["config"] == {
        "retries": {"limit": 3, "delay": 200, "backoff": "constant"},
        "timeout": "30 seconds",
    }

    await harness.advance(200)
    d = await detail(api, "probe-wf", "inst-a")
    assert shape(d) == shape(captured("detail-sleeping.txt").json()["result"])

    await harness.advance("3 seconds")
    d = await detail(api, "probe-wf", "inst-a")
    assert shape(d) == shape(captured("detail-waiting-for-event.txt").json()["result"])

    r = await api.post(
        f"{WF}/probe-wf/instances/inst-a/events/approval", json={"ok": True, "by": "me"}
    )
    same_as(r, "event-valid.txt")
    await harness.idle()
    d = await detail(api, "probe-wf", "inst-a")
    want = captured("detail-complete.txt").json()["result"]
    assert shape(d) == shape(want)
    assert [s["name"] for s in d["steps"]] == [s["name"] for s in want["steps"]]
    assert d["status"] == "complete" and d["step_count"] == 5
    assert d["output"]["c"] == "second first"
    wait = d["steps"][3]
    assert list(wait["output"]) == ["type", "payload", "timestamp"]
    assert wait["output"]["payload"] == {"ok": True, "by": "me"}
    assert d["end"] is not None and d["queued"].endswith("Z")


async def test_detail_of_an_errored_instance_has_wranglers_error_shapes(
    api: httpx.AsyncClient, harness: Harness
) -> None:
    await create(api, harness, "fail-wf", {"id": "fail-1"})
    await harness.advance(100)
    await harness.advance(100)
    d = await detail(api, "fail-wf", "fail-1")
    want = captured("detail-errored.txt").json()["result"]
    assert shape(d) == shape(want)
    assert d["status"] == "errored"
    assert list(d["error"]) == ["message", "name"]  # message first, as wrangler
    assert d["error"] == {"message": "boom always", "name": "RuntimeError"}
    failed = d["steps"][1]
    assert failed["success"] is False and "output" not in failed
    assert [a["success"] for a in failed["attempts"]] == [False, False, False]
    assert list(failed["attempts"][0]["error"]) == ["name", "message"]


async def test_detail_of_a_timed_out_wait_shows_the_step_error(
    api: httpx.AsyncClient, harness: Harness
) -> None:
    params = {"sleep": "1 second", "wtimeout": "2 seconds"}
    await create(api, harness, "probe-wf", {"id": "wt", "params": params})
    await harness.advance(200)
    await harness.advance("1 second")
    await harness.advance("2 seconds")
    d = await detail(api, "probe-wf", "wt")
    want = captured("detail-wait-timeout-errored.txt").json()["result"]
    assert shape(d) == shape(want)
    wait = d["steps"][3]
    assert wait["finished"] is True and wait["output"] is None
    assert wait["error"]["name"] == "WorkflowTimeoutError"
    assert d["status"] == "errored" and d["error"]["name"] == "WorkflowTimeoutError"


async def test_detail_of_a_terminated_instance(api: httpx.AsyncClient, harness: Harness) -> None:
    await create(api, harness, "probe-wf", {"id": "t"})
    await harness.advance(200)
    await harness.advance("3 seconds")
    assert (await patch(api, "probe-wf", "t", {"action": "terminate"})).status_code == 200
    d = await detail(api, "probe-wf", "t")
    assert shape(d) == shape(captured("detail-terminated.txt").json()["result"])
    assert (d["status"], d["output"], d["error"]) == ("terminated", None, None)
    assert d["end"] is not None and d["steps"][-1]["finished"] is False


async def test_detail_carries_dynwf_extensions(api: httpx.AsyncClient, harness: Harness) -> None:
    await create(api, harness, "probe-wf", {"id": "x"})
    await harness.advance(200)
    d = await detail(api, "probe-wf", "x")
    assert keys(d) == list(captured("detail-complete.txt").json()["result"])
    assert (d["tenant"], d["warnings"]) == ("", [])
    first, flaky, nap = d["steps"]
    assert (first["executions"], flaky["executions"], nap["executions"]) == (1, 2, 0)
    # each pass after the first replays the steps already done
    assert first["replays"] == 1 and flaky["replays"] == 0


async def test_detail_carries_the_timeline_extensions(
    api: httpx.AsyncClient, harness: Harness
) -> None:
    await create(api, harness, "probe-wf", {"id": "tl"})
    await harness.advance(200)
    d = await detail(api, "probe-wf", "tl")  # sleeping: the wake time is known
    nap = d["steps"][-1]
    assert (nap["type"], nap["sleep_ms"], nap["finished"]) == ("sleep", 3000, False)
    assert nap["wake_at"] is not None and nap["wake_at"] > nap["start"]
    assert all(s["wake_at"] is None for s in d["steps"][:-1])  # finished steps have none
    assert d["passes"] == 1 and d["events"] == []  # the pass that ended in a retry delay

    await harness.advance("3 seconds")
    await patch(api, "probe-wf", "tl", {"action": "pause"})
    r = await api.post(f"{WF}/probe-wf/instances/tl/events/approval", json={"ok": 1})
    assert r.status_code == 200
    d = await detail(api, "probe-wf", "tl")
    wait = d["steps"][-1]
    assert (wait["type"], wait["event_type"], wait["finished"]) == (
        "waitForEvent",
        "approval",
        False,
    )
    assert wait["wake_at"] is not None  # the wait's deadline
    (ev,) = d["events"]
    assert (ev["type"], ev["payload"], ev["consumed"]) == ("approval", {"ok": 1}, False)
    assert ev["timestamp"].endswith("Z")

    await patch(api, "probe-wf", "tl", {"action": "resume"})
    await harness.idle()
    d = await detail(api, "probe-wf", "tl")
    assert d["status"] == "complete" and d["events"][0]["consumed"] is True
    assert d["passes"] > 1
    wait = next(s for s in d["steps"] if s["type"] == "waitForEvent")
    assert wait["wake_at"] is None and wait["output"]["payload"] == {"ok": 1}


async def test_detail_unknown_instance_and_workflow_are_404(api: httpx.AsyncClient) -> None:
    same_as(await api.get(f"{WF}/probe-wf/instances/never-created"), "detail-unknown-instance.txt")
    same_as(await api.get(f"{WF}/nope/instances/inst-a"), "detail-unknown-workflow.txt")
    # looking leaves nothing behind (wrangler lists a phantom entry afterwards)
    same_as(await api.get(f"{WF}/probe-wf/instances"), "list-empty.txt")


# -- status changes -----------------------------------------------------------------------


async def test_status_pause_resume_terminate_restart(
    api: httpx.AsyncClient, harness: Harness
) -> None:
    await create(api, harness, "probe-wf", {"id": "s"})
    r = await patch(api, "probe-wf", "s", {"action": "pause", "from": "running"})
    same_as(r, "status-from-field.txt")
    assert (await detail(api, "probe-wf", "s"))["status"] == "paused"
    same_as(
        await patch(api, "probe-wf", "s", {"action": "pause"}), "status-pause-already-paused.txt"
    )
    same_as(await patch(api, "probe-wf", "s", {"action": "resume"}), "status-resume-paused.txt")
    await harness.idle()
    assert (await detail(api, "probe-wf", "s"))["status"] == "waiting"
    same_as(
        await patch(api, "probe-wf", "s", {"action": "terminate"}), "status-terminate-running.txt"
    )
    assert (await detail(api, "probe-wf", "s"))["status"] == "terminated"
    same_as(
        await patch(api, "probe-wf", "s", {"action": "restart"}), "status-restart-terminated.txt"
    )
    await harness.idle()
    d = await detail(api, "probe-wf", "s")
    assert d["status"] == "waiting" and [s["name"] for s in d["steps"]] == ["first-1", "flaky-1"]


async def test_status_bad_or_missing_action_is_400_before_any_lookup(
    api: httpx.AsyncClient,
) -> None:
    same_as(await patch(api, "probe-wf", "inst-a", {"action": "explode"}), "status-bad-action.txt")
    same_as(await patch(api, "probe-wf", "inst-a", {}), "status-missing-action.txt")
    r = await api.patch(f"{WF}/probe-wf/instances/inst-a/status")  # wrangler: 500
    assert r.status_code == 400 and "Invalid action 'undefined'" in r.text


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"pause", "the request body is not valid JSON: "),
        (b'"pause"', "the request body must be a JSON object like"),
    ],
)
async def test_status_body_that_is_not_an_object_is_400(
    api: httpx.AsyncClient, content: bytes, message: str
) -> None:
    r = await api.patch(f"{WF}/probe-wf/instances/inst-a/status", content=content)
    assert r.status_code == 400
    assert r.json()["errors"][0]["message"].startswith(message)


async def test_status_on_finished_instances(api: httpx.AsyncClient, harness: Harness) -> None:
    await create(api, harness, "fail-wf", {"id": "f"})
    await harness.advance(100)
    await harness.advance(100)
    r = await patch(api, "fail-wf", "f", {"action": "terminate"})  # wrangler: 500
    assert r.status_code == 409
    assert r.json()["errors"][0]["message"] == (
        "cannot terminate instance 'f' while it is errored; it has finished "
        "(restart it to run it again)"
    )
    assert (await patch(api, "fail-wf", "f", {"action": "pause"})).status_code == 409
    same_as(await patch(api, "fail-wf", "f", {"action": "resume"}), "status-resume-complete.txt")
    same_as(await patch(api, "fail-wf", "f", {"action": "restart"}), "status-restart-errored.txt")
    await harness.idle()
    assert (await detail(api, "fail-wf", "f"))["status"] == "waiting"


async def test_status_unknown_instance_and_workflow_are_404(api: httpx.AsyncClient) -> None:
    same_as(
        await patch(api, "probe-wf", "never-created-4", {"action": "restart"}),
        "status-restart-unknown.txt",
    )
    same_as(await patch(api, "nope", "inst-a", {"action": "pause"}), "status-unknown-workflow.txt")


# -- events -------------------------------------------------------------------------------------


@pytest.mark.parametrize("type_", ["bad%20type!", "t" * 101])
async def test_event_type_is_validated(
    api: httpx.AsyncClient, harness: Harness, type_: str
) -> None:
    await create(api, harness, "probe-wf", {"id": "e"})
    r = await api.post(f"{WF}/probe-wf/instances/e/events/{type_}", json={"x": 1})
    assert r.status_code == 400  # wrangler: 200
    assert r.json()["errors"][0]["message"].startswith("event type ")


async def test_event_body_not_json_is_400_and_empty_is_no_payload(
    api: httpx.AsyncClient, harness: Harness
) -> None:
    await create(api, harness, "probe-wf", {"id": "e"})
    await harness.advance(200)
    await harness.advance("3 seconds")
    url = f"{WF}/probe-wf/instances/e/events/approval"
    r = await api.post(url, content=b"{not json")
    assert r.status_code == 400 and "not valid JSON" in r.text
    same_as(await api.post(url), "event-no-body.txt")
    await harness.idle()
    d = await detail(api, "probe-wf", "e")
    assert d["status"] == "complete" and d["steps"][3]["output"]["payload"] is None


async def test_event_sent_while_paused_is_delivered_on_resume(
    api: httpx.AsyncClient, harness: Harness
) -> None:
    await create(api, harness, "probe-wf", {"id": "e"})
    await harness.advance(200)
    await harness.advance("3 seconds")
    await patch(api, "probe-wf", "e", {"action": "pause"})
    r = await api.post(f"{WF}/probe-wf/instances/e/events/approval", json={"while": "paused"})
    same_as(r, "event-to-paused.txt")
    await harness.idle()
    assert (await detail(api, "probe-wf", "e"))["status"] == "paused"
    await patch(api, "probe-wf", "e", {"action": "resume"})
    await harness.idle()
    d = await detail(api, "probe-wf", "e")
    assert d["status"] == "complete" and d["output"]["ev"]["payload"] == {"while": "paused"}


async def test_event_to_a_finished_instance_is_409(
    api: httpx.AsyncClient, harness: Harness
) -> None:
    await create(api, harness, "probe-wf", {"id": "e"})
    await patch(api, "probe-wf", "e", {"action": "terminate"})
    r = await api.post(f"{WF}/probe-wf/instances/e/events/approval", json={"x": 1})
    assert r.status_code == 409  # wrangler: 200, and the event goes nowhere
    assert "it is terminated" in r.json()["errors"][0]["message"]


async def test_event_unknown_instance_and_workflow_are_404(api: httpx.AsyncClient) -> None:
    r = await api.post(f"{WF}/probe-wf/instances/nope/events/approval", json={"x": 1})
    same_as(r, "event-unknown-instance.txt")
    r = await api.post(f"{WF}/nope/instances/inst-a/events/approval", json={"x": 1})
    same_as(r, "event-unknown-workflow.txt")


# -- delete ---------------------------------------------------------------------------------------


async def test_delete_instance_answers_like_wrangler_then_404(
    api: httpx.AsyncClient, harness: Harness
) -> None:
    same_as(
        await api.delete(f"{WF}/probe-wf/instances/never-existed-x"), "delete-unknown-instance.txt"
    )
    same_as(await api.delete(f"{WF}/nope/instances/inst-a"), "delete-unknown-workflow.txt")
    await create(api, harness, "probe-wf", {"id": "d"})
    same_as(await api.delete(f"{WF}/probe-wf/instances/d"), "delete-instance.txt")
    again = await api.delete(f"{WF}/probe-wf/instances/d")
    assert again.status_code == 404
    assert again.json()["errors"] == [
        {"code": 10501, "message": "Workflow instance 'd' not found."}
    ]
    # unlike wrangler, the detail is gone at once, and the id is free again
    assert (await api.get(f"{WF}/probe-wf/instances/d")).status_code == 404
    ids = [i["id"] for i in (await api.get(f"{WF}/probe-wf/instances")).json()["result"]]
    assert "d" not in ids
    await create(api, harness, "probe-wf", {"id": "d"})
    assert (await detail(api, "probe-wf", "d"))["status"] in ("queued", "running", "waiting")


async def test_deleted_instance_stays_deleted_after_a_restart(tmp_path: Path) -> None:
    from dynwf.engine import Engine, EntrypointProgram, Workflow
    from tests.fixtures.server_probe import ProbeWorkflow

    def engine() -> Engine:
        e = Engine(tmp_path / "j.duckdb")
        e.register(Workflow("probe-wf", "PROBE", EntrypointProgram(ProbeWorkflow)))
        return e

    first = engine()
    async with first:
        await first.binding("PROBE").create({"id": "gone"})
        await first.binding("PROBE").create({"id": "kept"})
        await first.wait_until_idle(timeout=300)
        await first.delete(first.lookup("probe-wf", "", "gone"))
    second = engine()
    async with second:
        assert [r.id for r in second.instances(workflow="probe-wf")] == ["kept"]
        assert all(st.id != "gone" for st in second.all_states())
        with pytest.raises(InstanceNotFoundError):
            second.lookup("probe-wf", "", "gone")


# -- unrouted ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "capture"),
    [
        ("GET", "/nothing/here", "unknown-path.txt"),
        ("GET", "/workflows/probe-wf/instances/inst-a/steps", "unknown-path-under-workflows.txt"),
        ("PUT", "/workflows/probe-wf", "method-not-routed.txt"),
    ],
)
async def test_unrouted_api_paths_are_plain_text_404(
    api: httpx.AsyncClient, method: str, path: str, capture: str
) -> None:
    same_as(await api.request(method, f"{API}{path}"), capture)


async def test_views_are_the_engines_public_pure_functions(
    api: httpx.AsyncClient, harness: Harness
) -> None:
    from dynwf.engine import instance_detail, instance_list_item

    await create(api, harness, "probe-wf", {"id": "v", "params": {"n": 1}})
    st = harness.engine.lookup("probe-wf", "", "v")
    assert instance_detail(st) == instance_detail(st) == await detail(api, "probe-wf", "v")
    (row,) = harness.engine.instances(workflow="probe-wf")
    listed = (await api.get(f"{WF}/probe-wf/instances")).json()["result"]
    assert [instance_list_item(row)] == listed
