"""The Label Studio provider against a real Label Studio 1.23 server on loopback.

Annotators work the way the UI does: each asks the next-task API for a task (which honours the
project's `maximum_annotations`) and posts an annotation for it. Then they misbehave the way
the Community edition allows (a second annotation on the same task, an edit of someone else's
annotation, a skipped task) and the collected labels go through the real quality gate.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from labelloop import storage
from labelloop.cli import main
from labelloop.gates import GatePolicy
from labelloop.providers import LabelingTask, get_provider
from labelloop.providers.gemini_models import DEFAULT_MODEL
from labelloop.providers.label_studio import LabelStudioProvider, dataset_name, project_title
from labelloop.providers.label_studio_format import (
    default_instructions,
    hotkeys,
    labeling_config,
    read_export,
    to_result,
)
from labelloop.providers.secrets import resolve_api_key
from labelloop.schemas import Box, Item, Span, TaskType, text_item_id
from labelloop.stages.quality_gate import quality_gate
from labelloop.stages.run_labeling_job import run_labeling_job
from tests.servers import label_studio as ls_server

# -- pure parts (no server) ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("task_type", "tag"),
    [
        (TaskType.IMAGE_CLASSIFICATION, 'choice="single"'),
        (TaskType.IMAGE_MULTILABEL_CLASSIFICATION, 'choice="multiple"'),
        (TaskType.IMAGE_OBJECT_DETECTION, "<RectangleLabels"),
        (TaskType.TEXT_CLASSIFICATION, '<Text name="text"'),
        (TaskType.TEXT_ENTITY_EXTRACTION, "<Labels"),
    ],
)
def test_labeling_config_has_the_right_control(task_type: TaskType, tag: str) -> None:
    config = labeling_config(task_type, ["a", 'b"<q>'], "Pick one & explain")
    assert tag in config
    # Labels and instructions are XML-escaped, so odd characters cannot break the config.
    assert "b&quot;&lt;q&gt;" in config
    assert 'value="Pick one &amp; explain"' in config


def test_every_label_gets_its_own_hotkey() -> None:
    digits = [str(i) for i in range(10)]
    # Label Studio numbers choices by position unless each names a key: "3" must pick "3".
    assert hotkeys(digits) == digits
    assert hotkeys(["cat", "dog", "bird", "cow"]) == ["c", "d", "i", "o"]
    many = hotkeys([f"class {i}" for i in range(40)])
    assigned = [k for k in many if k]
    assert len(assigned) == len(set(assigned))
    assert not set(assigned) & set("rbehuvkm")  # the image tools' keys
    config = labeling_config(TaskType.IMAGE_CLASSIFICATION, digits, small_images=True)
    assert '<Choice value="3" hotkey="3"/>' in config
    assert 'smoothing="false"' in config
    assert 'width="320px"' in config
    assert "smoothing" not in labeling_config(TaskType.IMAGE_CLASSIFICATION, digits)
    assert '<Label value="cat" hotkey="c"/>' in labeling_config(
        TaskType.IMAGE_OBJECT_DETECTION, ["cat", "dog"]
    )
    text = default_instructions(TaskType.IMAGE_CLASSIFICATION, ["cat", "dog"])
    assert "cat (key c), dog (key d)" in text


def test_project_titles_people_can_tell_apart() -> None:
    title = project_title("digits/images", 2, "2026-11-29", "3f9a2c1b44d0e7aa")
    assert title == "digits/images · round 2 · 2026-11-29 · 3f9a2c1b"
    long = project_title("x" * 80, 12, "2026-11-29", "3f9a2c1b44d0e7aa")
    assert len(long) == 50
    assert long.endswith("… · round 12 · 2026-11-29 · 3f9a2c1b")
    items = [Item(id=u, uri=u) for u in ("/d/digits/images/1.png", "/d/digits/images/2.png")]
    assert dataset_name(items) == "digits/images"
    assert dataset_name([Item(id="gs://b/pets/a.jpg", uri="gs://b/pets/a.jpg")]) == "pets"
    assert dataset_name([Item(id="text:1", text="hi")]) == "text items"


def _task(item: str, annotations: list[dict[str, Any]], *, key: str = "text") -> dict[str, Any]:
    return {"id": 1, "data": {key: "t", "item_id": item}, "annotations": annotations}


def test_read_export_applies_the_trust_rules() -> None:
    choice = lambda label: [  # noqa: E731
        {"type": "choices", "from_name": "label", "to_name": "text", "value": {"choices": [label]}}
    ]
    tasks = [
        _task(
            "x",
            [
                {"id": 1, "completed_by": 1, "result": choice("a"), "updated_at": "2026-01-01"},
                {"id": 2, "completed_by": 1, "result": choice("b"), "updated_at": "2026-01-02"},
                {"id": 3, "completed_by": 2, "updated_by": 3, "result": choice("a")},
                {"id": 4, "completed_by": 3, "was_cancelled": True, "result": []},
                {"id": 5, "completed_by": 4, "result": choice("zzz")},
            ],
        )
    ]
    read = read_export(
        tasks, task_type=TaskType.TEXT_CLASSIFICATION, labels=["a", "b"], source="export.json"
    )
    assert [(a.item, a.annotator, a.value) for a in read.annotations] == [("x", "1", "b")]
    assert read.skipped == 1
    reasons = sorted(b.field for b in read.bad)
    assert reasons == ["completed_by", "result", "updated_by"]
    assert "kept annotation 2, dropped 1" in next(
        b.reason for b in read.bad if b.field == "completed_by"
    )


def test_boxes_round_trip_through_percent() -> None:
    box = Box(0.1, 0.2, 0.5, 0.9, "cat")
    result = to_result(TaskType.IMAGE_OBJECT_DETECTION, (box,))
    assert result[0]["value"]["x"] == pytest.approx(10.0)
    assert result[0]["value"]["height"] == pytest.approx(70.0)
    read = read_export(
        [
            {
                "id": 1,
                "data": {"image": "gs://b/x.png"},
                "annotations": [{"id": 1, "completed_by": 7, "result": result}],
            }
        ],
        task_type=TaskType.IMAGE_OBJECT_DETECTION,
        labels=["cat"],
        source="s",
    )
    (got,) = read.annotations[0].value
    assert isinstance(got, Box)
    assert (got.x_min, got.y_min, got.x_max, got.y_max) == pytest.approx((0.1, 0.2, 0.5, 0.9))
    assert read.annotations[0].item == "gs://b/x.png"


def test_missing_api_key_names_both_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    with pytest.raises(ValueError, match=r"LABEL_STUDIO_API_KEY.*Secret Manager"):
        get_provider("label_studio", {"url": "http://127.0.0.1:9"})


def test_api_key_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABELLOOP_TEST_KEY", "  k3y \n")
    assert resolve_api_key(env_var="LABELLOOP_TEST_KEY", secret=None, field="f") == "k3y"
    with pytest.raises(ValueError, match="projects/P/secrets/S/versions/V"):
        resolve_api_key(env_var="LABELLOOP_TEST_KEY", secret="my-secret", field="f")


# -- the real server ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    try:
        ls_server.ensure_installed()
    except ls_server.Unavailable as exc:
        pytest.skip(str(exc))
    srv = ls_server.start(tmp_path_factory.mktemp("label-studio"))
    yield srv
    srv.stop()


class Annotator:
    """One person at the UI: asks for the next task and submits an answer."""

    def __init__(self, server: ls_server.LabelStudioServer, email: str) -> None:
        self.email = email
        self.http = httpx.Client(
            base_url=server.url,
            headers={"Authorization": f"Token {server.annotator_tokens[email]}"},
            timeout=60,
        )

    def next_task(self, project: int) -> dict[str, Any] | None:
        response = self.http.get(f"/api/projects/{project}/next/")
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return response.json()

    def submit(self, project: int, task: int, result: list, **extra: Any) -> dict[str, Any]:
        response = self.http.post(
            f"/api/tasks/{task}/annotations/",
            params={"project": project},
            json={"result": result, "lead_time": 3.2, "project": project, "task": task, **extra},
        )
        response.raise_for_status()
        return response.json()

    def edit(self, annotation: int, result: list) -> None:
        self.http.patch(
            f"/api/annotations/{annotation}/", json={"result": result}
        ).raise_for_status()


def _project_count(server: ls_server.LabelStudioServer) -> int:
    response = httpx.get(
        f"{server.url}/api/projects/",
        headers={"Authorization": f"Token {server.admin_token}"},
        params={"page_size": 100},
    )
    response.raise_for_status()
    return int(response.json()["count"])


def _work_queue(annotators: list[Annotator], project: int, answer) -> dict[tuple[str, int], int]:
    """Round-robin through the annotators until the next-task API has nothing for anyone."""
    posted: dict[tuple[str, int], int] = {}
    active = list(annotators)
    while active:
        for person in list(active):
            task = person.next_task(project)
            if task is None:
                active.remove(person)
                continue
            created = person.submit(project, task["id"], answer(person.email, task))
            posted[(person.email, task["id"])] = created["id"]
    return posted


@pytest.mark.server
def test_text_job_with_overlap_misbehaviour_and_quality_gate(
    server: ls_server.LabelStudioServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", server.admin_token)
    texts = [f"review number {i}: {'great' if i % 2 else 'awful'} product" for i in range(6)]
    truth = {text_item_id(t): ("pos" if i % 2 else "neg") for i, t in enumerate(texts)}
    items = [Item(id=text_item_id(t), text=t) for t in texts]
    items_uri = str(tmp_path / "items.jsonl")
    storage.write_jsonl(
        items_uri, [i.to_import_record(TaskType.TEXT_CLASSIFICATION) for i in items]
    )
    options = json.dumps({"url": server.url, "instructions": "Is the review positive?"})

    def stage(run: str) -> Any:
        return run_labeling_job(
            items_uri=items_uri,
            task_type="text_classification",
            labels="neg,pos",
            provider="label_studio",
            provider_options=options,
            labelers_per_item=2,
            annotations_uri=str(tmp_path / f"ann-{run}.jsonl"),
            job_uri=str(tmp_path / f"job-{run}.json"),
            rejects_uri=str(tmp_path / f"rej-{run}.jsonl"),
            budget=json.dumps({"human_usd_per_hour": 36.0}),
        )

    before = _project_count(server)
    first = stage("1")
    # Nothing labeled yet: the step returns partial (empty) labels and says so.
    assert (first.annotations, first.complete) == (0, False)
    job = json.loads(Path(tmp_path / "job-1.json").read_text())
    project = int(job["external_id"])
    assert job["progress"] == {"labeled": 0, "total": 6}
    assert job["provider_summary"]["url"] == f"{server.url}/projects/{project}"
    # Watching an unfinished job until the timeout is not success: exit 1, said once.
    watch = ["label", "status", "--job", str(tmp_path / "job-1.json")]
    watch += ["--provider", "label_studio", "--options", options, "--watch", "--timeout", "0"]
    assert main(watch) == 1
    err = capsys.readouterr().err
    assert err.count("error: the job is unfinished after 0 s (0/6 items labeled)") == 1
    assert "HTTP Request" not in err

    people = [Annotator(server, e) for e in ls_server.ANNOTATORS]

    def answer(email: str, task: dict[str, Any]) -> list:
        right = truth[task["data"]["item_id"]]
        label = right if email != "ann3@example.com" else {"pos": "neg", "neg": "pos"}[right]
        return to_result(TaskType.TEXT_CLASSIFICATION, label)

    posted = _work_queue(people, project, answer)
    per_task = Counter(task for _, task in posted)
    # The next-task API served every task to exactly `maximum_annotations` different people.
    assert sorted(per_task.values()) == [2] * 6
    assert len(posted) == 12

    # Misbehaviour the Community edition allows.
    by_person = {e: [t for (p, t) in posted if p == e] for e in ls_server.ANNOTATORS}
    twice_person = next(e for e in ("ann1@example.com", "ann2@example.com") if by_person[e])
    twice_task = by_person[twice_person][0]
    twice_id = people[list(ls_server.ANNOTATORS).index(twice_person)].submit(
        project, twice_task, to_result(TaskType.TEXT_CLASSIFICATION, "neg")
    )["id"]
    victim_task = by_person["ann3@example.com"][0]
    editor = next(p for p in people if p.email != "ann3@example.com")
    editor.edit(
        posted[("ann3@example.com", victim_task)], to_result(TaskType.TEXT_CLASSIFICATION, "pos")
    )
    people[2].submit(project, by_person["ann1@example.com"][-1], [], was_cancelled=True)

    # A retried step: same project, no new tasks, and everything trustworthy is collected.
    second = stage("2")
    assert _project_count(server) == before + 1
    job2 = json.loads(Path(tmp_path / "job-2.json").read_text())
    assert job2["external_id"] == str(project)
    tasks = LabelStudioProvider(url=server.url, api_key=server.admin_token).export(
        get_provider("label_studio", {"url": server.url}).submit(
            items, LabelingTask(TaskType.TEXT_CLASSIFICATION, ("neg", "pos")), labelers_per_item=2
        )
    )
    assert len(tasks) == 6
    assert second.annotations == 11  # 12 posted, one edited by someone else is not trusted
    assert second.skipped == 1
    # People are paid by the hour for the time Label Studio reports (`lead_time`, 3.2 s each).
    cost = job2["cost"]["total"]
    assert cost["human_labels"] == 11
    assert cost["estimated_seconds"] == 0
    assert cost["human_seconds"] >= 11 * 3.2 - 1e-9
    assert cost["human_usd"] == pytest.approx(cost["human_seconds"] / 3600 * 36.0)
    assert second.bad_records == 2  # the double post (resolved) and the edit
    rejects = [json.loads(line) for line in Path(tmp_path / "rej-2.jsonl").read_text().splitlines()]
    assert {r["field"] for r in rejects} == {"completed_by", "updated_by"}
    assert any(f"kept annotation {twice_id}" in r["reason"] for r in rejects)

    rows = [json.loads(line) for line in Path(tmp_path / "ann-2.jsonl").read_text().splitlines()]
    assert {r["annotator"] for r in rows} <= set(ls_server.ANNOTATORS)
    assert len({(r["item"], r["annotator"]) for r in rows}) == len(rows)
    kept = next(
        r
        for r in rows
        if r["annotator"] == twice_person and r["item"] == tasks_item(tasks, twice_task)
    )
    assert kept["label"] == "neg"  # the later of the two annotations

    # `labelloop label status` reads the pipeline's job record and asks the server.
    assert (
        main(
            [
                "label",
                "status",
                "--job",
                str(tmp_path / "job-2.json"),
                "--provider",
                "label_studio",
                "--options",
                options,
            ]
        )
        == 0
    )
    status = json.loads(capsys.readouterr().out)
    per_item = Counter(r["item"] for r in rows)
    assert status["labeled"] == sum(1 for n in per_item.values() if n >= 2)
    assert status["total"] == 6

    gate = quality_gate(
        annotations_uri=str(tmp_path / "ann-2.jsonl"),
        task_type="text_classification",
        labels="neg,pos",
        consolidation_method="mv",
        agreement_metric="krippendorff_alpha",
        min_confidence=0.99,
        state_uri="",
        consolidated_uri=str(tmp_path / "cons.jsonl"),
        review_uri=str(tmp_path / "review.jsonl"),
        metrics_uri=str(tmp_path / "metrics.json"),
        rejects_uri=str(tmp_path / "gate-rej.jsonl"),
        policy=GatePolicy(min_labeled_count=1, min_agreement=0.0),
    )
    votes: dict[str, Counter] = {}
    for r in rows:
        votes.setdefault(r["item"], Counter())[r["label"]] += 1
    unanimous = sum(1 for v in votes.values() if len(v) == 1)
    assert gate.annotations == 11
    assert gate.labeled_items == 6
    assert gate.label_count == unanimous
    assert gate.annotators == len({r["annotator"] for r in rows})
    assert gate.bad_records == 0


def tasks_item(tasks: list[dict[str, Any]], task_id: int) -> str:
    return next(t["data"]["item_id"] for t in tasks if t["id"] == task_id)


@pytest.mark.server
def test_image_boxes_with_local_files_and_predictions(
    server: ls_server.LabelStudioServer,
) -> None:
    folder = server.files_root / "boxes"
    folder.mkdir()
    items = []
    for i in range(2):
        path = folder / f"img{i}.png"
        Image.fromarray(np.full((20, 40), 40 * i, dtype=np.uint8)).save(path)
        items.append(Item(id=str(path), uri=str(path)))
    provider = LabelStudioProvider(
        url=server.url, api_key=server.admin_token, local_files_root=str(server.files_root)
    )
    task = LabelingTask(TaskType.IMAGE_OBJECT_DETECTION, ("cat", "dog"))
    predicted = (Box(0.1, 0.1, 0.4, 0.5, "cat"),)
    job = provider.submit(
        items,
        task,
        labelers_per_item=1,
        instructions="Box every animal.",
        predictions={items[0].id: (predicted, 0.83)},
    )
    assert provider.submit(items, task, labelers_per_item=1).external_id == job.external_id
    tasks = provider.export(job)
    assert len(tasks) == 2
    first = next(t for t in tasks if t["data"]["item_id"] == items[0].id)
    admin = httpx.Client(
        base_url=server.url, headers={"Authorization": f"Token {server.admin_token}"}
    )
    # Label Studio serves the local file at the URL we gave the task.
    image = admin.get(first["data"]["image"])
    assert image.status_code == 200
    assert image.content == Path(items[0].id).read_bytes()
    preds = admin.get("/api/predictions/", params={"task": first["id"]}).json()
    assert [p["score"] for p in preds] == [pytest.approx(0.83)]
    assert preds[0]["result"][0]["value"]["rectanglelabels"] == ["cat"]

    person = Annotator(server, "ann1@example.com")
    drawn = (Box(0.25, 0.5, 0.75, 1.0, "dog"),)
    while (t := person.next_task(int(job.external_id))) is not None:
        person.submit(int(job.external_id), t["id"], to_result(task.task_type, drawn))
    collected = provider.collect(job)
    assert provider.progress(job).labeled == 2
    assert len(collected.annotations) == 2
    for ann in collected.annotations:
        assert ann.annotator == "ann1@example.com"
        (box,) = ann.value
        assert isinstance(box, Box)
        assert (box.x_min, box.y_min, box.x_max, box.y_max) == pytest.approx((0.25, 0.5, 0.75, 1.0))
        assert box.label == "dog"


@pytest.mark.server
def test_ner_and_multilabel_projects(server: ls_server.LabelStudioServer) -> None:
    provider = LabelStudioProvider(url=server.url, api_key=server.admin_token)
    text = "Ada Lovelace lived in London."
    item = Item(id=text_item_id(text), text=text)
    job = provider.submit(
        [item], LabelingTask(TaskType.TEXT_ENTITY_EXTRACTION, ("PER", "LOC")), labelers_per_item=1
    )
    person = Annotator(server, "ann2@example.com")
    t = person.next_task(int(job.external_id))
    assert t is not None
    spans = (Span(0, 12, "PER"), Span(22, 28, "LOC"))
    person.submit(
        int(job.external_id), t["id"], to_result(TaskType.TEXT_ENTITY_EXTRACTION, spans, text=text)
    )
    (ann,) = provider.collect(job).annotations
    assert ann.value == spans
    assert ann.item == item.id

    (server.files_root / "multi").mkdir()
    img = server.files_root / "multi" / "multi.png"
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(img)
    multi = LabelStudioProvider(
        url=server.url, api_key=server.admin_token, local_files_root=str(server.files_root)
    )
    task = LabelingTask(TaskType.IMAGE_MULTILABEL_CLASSIFICATION, ("sky", "sea", "sand"))
    job = multi.submit([Item(id=str(img), uri=str(img))], task, labelers_per_item=1)
    titles = {
        p["title"]
        for p in httpx.get(
            f"{server.url}/api/projects/", headers={"Authorization": f"Token {server.admin_token}"}
        ).json()["results"]
    }
    assert any(t.startswith("multi · round ") and t.endswith(job.key[:8]) for t in titles)
    t = person.next_task(int(job.external_id))
    assert t is not None
    person.submit(
        int(job.external_id), t["id"], to_result(task.task_type, frozenset({"sea", "sky"}))
    )
    (ann,) = multi.collect(job).annotations
    assert ann.value == frozenset({"sea", "sky"})


def test_secret_manager_version_over_rest_and_no_keys_in_options() -> None:
    import base64
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread

    from google.oauth2.credentials import Credentials

    from labelloop.providers.secrets import access_secret_version

    seen: list[tuple[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append((self.path, self.headers.get("Authorization", "")))
            body = json.dumps(
                {"payload": {"data": base64.b64encode(b"s3cret\n").decode()}}
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            return

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        value = access_secret_version(
            "projects/p/secrets/ls-key/versions/latest",
            endpoint=f"http://127.0.0.1:{httpd.server_address[1]}/v1",
            credentials=Credentials(token="tok"),
        )
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert value == "s3cret"
    assert seen == [("/v1/projects/p/secrets/ls-key/versions/latest:access", "Bearer tok")]
    with pytest.raises(ValueError, match="secrets never travel"):
        get_provider("label_studio", {"url": "http://x", "api_key": "k"})


@pytest.mark.server
def test_gemini_then_label_studio_with_pre_annotations(
    server: ls_server.LabelStudioServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.servers import gemini_fake

    monkeypatch.setenv("LABEL_STUDIO_API_KEY", server.admin_token)
    texts = ["sure: great", "sure: awful", "unsure: fine?", "unsure: meh"]
    items = [Item(text_item_id(t), text=t) for t in texts]

    def model(body: dict[str, Any]) -> tuple[int, Any]:
        prompt = body["contents"][0]["parts"][0]["text"]
        label = "pos" if ("great" in prompt or "fine" in prompt) else "neg"
        return 200, gemini_fake.answer(
            label, -0.01 if "sure:" in prompt and "unsure" not in prompt else -0.9
        )

    task = LabelingTask(TaskType.TEXT_CLASSIFICATION, ("neg", "pos"))
    with gemini_fake.serve(model) as fake:
        options = {
            "gemini": {"project": "p", "base_url": fake.url},
            "human": {"provider": "label_studio", "options": {"url": server.url}},
            "threshold": 0.9,
        }
        routing = get_provider("gemini_then_human", options)
        job = routing.submit(items, task, labelers_per_item=1)
        # A retry (new process, new Gemini calls) finds the same project.
        again = get_provider("gemini_then_human", options).submit(items, task, labelers_per_item=1)
    human = json.loads(job.external_id)["human"]
    assert json.loads(again.external_id)["human"]["external_id"] == human["external_id"]
    project = int(human["external_id"])
    admin = httpx.Client(
        base_url=server.url, headers={"Authorization": f"Token {server.admin_token}"}
    )
    exported = admin.get(
        f"/api/projects/{project}/export",
        params={"exportType": "JSON", "download_all_tasks": "true"},
    ).json()
    assert sorted(t["data"]["text"] for t in exported) == ["unsure: fine?", "unsure: meh"]
    scores = [
        p["score"]
        for t in exported
        for p in admin.get("/api/predictions/", params={"task": t["id"]}).json()
    ]
    assert scores == pytest.approx([np.exp(-0.9)] * 2)

    person = Annotator(server, "ann3@example.com")
    while (t := person.next_task(project)) is not None:
        person.submit(project, t["id"], to_result(task.task_type, "neg"))
    got = routing.collect(job)
    by_annotator = Counter(a.annotator for a in got.annotations)
    assert by_annotator == {f"gemini:{DEFAULT_MODEL}": 2, "ann3@example.com": 2}
    assert routing.progress(job).done


@pytest.mark.server
def test_a_good_label_studio_day(server: ls_server.LabelStudioServer) -> None:
    """Readable titles (dataset, round, date), instructions, hotkeys by label, crisp small
    images, the local-files message before anything is created, and people's time."""
    import datetime as dt

    folder = server.files_root / "digits" / "images"
    folder.mkdir(parents=True)
    paths = []
    for i in range(4):
        path = folder / f"{i}.png"
        Image.fromarray(np.full((8, 8), 30 * i, dtype=np.uint8)).save(path)
        paths.append(path)
    items = [Item(id=str(p), uri=str(p)) for p in paths]
    task = LabelingTask(TaskType.IMAGE_CLASSIFICATION, tuple(str(i) for i in range(10)))
    admin = httpx.Client(
        base_url=server.url, headers={"Authorization": f"Token {server.admin_token}"}
    )

    # Without the document root the provider says what to set, and creates nothing.
    before = _project_count(server)
    bare = LabelStudioProvider(url=server.url, api_key=server.admin_token)
    with pytest.raises(ValueError, match="LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true"):
        bare.submit(items[:2], task, labelers_per_item=1)
    assert _project_count(server) == before

    provider = LabelStudioProvider(
        url=server.url, api_key=server.admin_token, local_files_root=str(server.files_root)
    )
    first = provider.submit(items[:2], task, labelers_per_item=1)
    second = provider.submit(items[2:], task, labelers_per_item=1)
    again = provider.submit(items[:2], task, labelers_per_item=1)
    assert again.external_id == first.external_id
    today = dt.date.today().isoformat()
    project = admin.get(f"/api/projects/{first.external_id}/").json()
    assert project["title"] == f"digits/images · round 1 · {today} · {first.key[:8]}"
    title2 = admin.get(f"/api/projects/{second.external_id}/").json()["title"]
    assert title2.startswith("digits/images · round 2 · ")
    assert '<Choice value="3" hotkey="3"/>' in project["label_config"]
    assert 'smoothing="false"' in project["label_config"]
    assert "Choose the one label that fits the image best" in project["expert_instruction"]
    assert "3 (key 3)" in project["expert_instruction"]

    person = Annotator(server, "ann2@example.com")
    while (t := person.next_task(int(first.external_id))) is not None:
        person.submit(int(first.external_id), t["id"], to_result(task.task_type, "3"))
    assert provider.collect(first).annotations
    summary = provider.summary()
    assert summary["title"] == project["title"]
    assert summary["url"] == f"{server.url}/projects/{first.external_id}"
    assert summary["annotators"]["ann2@example.com"] == {
        "answers": 2,
        "skipped": 0,
        "seconds": pytest.approx(6.4),
    }


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.server
def test_cli_errors_are_one_line_with_an_exit_code(
    server: ls_server.LabelStudioServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    image = tmp_path / "img" / "a.png"
    image.parent.mkdir()
    image.write_bytes(b"\x89PNG\r\n\x1a\n")
    items_uri = str(tmp_path / "items.jsonl")
    storage.write_jsonl(
        items_uri,
        [Item(str(image), uri=str(image)).to_import_record(TaskType.IMAGE_CLASSIFICATION)],
    )

    def label(options: dict[str, Any], key: str) -> tuple[int, list[str]]:
        monkeypatch.setenv("LABEL_STUDIO_API_KEY", key)
        code = main(
            [
                "label",
                "status",
                "--provider",
                "label_studio",
                "--options",
                json.dumps(options),
                "--items",
                items_uri,
                "--task-type",
                "image_classification",
                "--labels",
                "cat,dog",
            ]
        )
        err = capsys.readouterr().err
        assert "Traceback" not in err
        return code, [line for line in err.splitlines() if line.startswith("error:")]

    # Pre-flight finds the live server (a closed port is refused: test_preflight).
    from labelloop.config import load_config
    from labelloop.preflight import preflight

    config = load_config(
        "c.yaml",
        text=f"pipeline:\n  source_uri: {tmp_path}\n  provider: label_studio\n"
        f"  provider_options: {{url: '{server.url}'}}\n",
    )
    preflight(config, target="local", env={"LABEL_STUDIO_API_KEY": "k"})
    code, lines = label({"url": server.url}, "not-a-token")
    assert code == 4
    assert len(lines) == 1
    assert "Label Studio answered 401 (check LABEL_STUDIO_API_KEY)" in lines[0]
    port = _closed_port()
    code, lines = label({"url": f"http://127.0.0.1:{port}"}, server.admin_token)
    assert code == 3
    assert len(lines) == 1
    assert f"cannot reach http://127.0.0.1:{port}/" in lines[0]
    # The server refuses a local-files storage outside its document root: a 400.
    code, lines = label({"url": server.url, "local_files_root": "/"}, server.admin_token)
    assert code == 5
    assert len(lines) == 1
    assert "answered 400" in lines[0]


@pytest.mark.slow
@pytest.mark.server
def test_hotkeys_and_crisp_images_in_the_labeling_ui(
    server: ls_server.LabelStudioServer, tmp_path: Path
) -> None:
    """What an annotator gets: Label Studio's own labeling UI in a real (headless) browser,
    logged in as a person. Pressing 3 picks the choice "3" (not the third one, "2"), and an
    8x8 image is drawn 320 px wide as crisp blocks (two grey levels, no blur)."""
    from tests.servers import chromium

    if chromium.BINARY is None:
        pytest.skip("chromium is not installed (.ci/run installs Debian's package)")
    folder = server.files_root / "ui-check" / "images"
    folder.mkdir(parents=True)
    path = folder / "diagonal.png"
    # Black with a white diagonal of 2x2 blocks: any smoothing makes greys at every edge.
    block = np.kron(np.eye(4, dtype=np.uint8) * 255, np.ones((2, 2), dtype=np.uint8))
    Image.fromarray(block).save(path)
    task = LabelingTask(TaskType.IMAGE_CLASSIFICATION, tuple(str(i) for i in range(10)))
    provider = LabelStudioProvider(
        url=server.url, api_key=server.admin_token, local_files_root=str(server.files_root)
    )
    job = provider.submit([Item(id=str(path), uri=str(path))], task, labelers_per_item=1)
    project = int(job.external_id)
    admin = httpx.Client(
        base_url=server.url, headers={"Authorization": f"Token {server.admin_token}"}
    )
    task_id = admin.get("/api/tasks/", params={"project": project}).json()["tasks"][0]["id"]
    # Log in through the login form, as a person does; the browser gets the session cookie.
    person = httpx.Client(base_url=server.url, follow_redirects=True, timeout=60)
    person.get("/user/login/")
    person.post(
        "/user/login/",
        data={
            "email": ls_server.ADMIN[0],
            "password": ls_server.PASSWORD,
            "csrfmiddlewaretoken": person.cookies["csrftoken"],
        },
        headers={"Referer": f"{server.url}/user/login/"},
    ).raise_for_status()
    assert "sessionid" in person.cookies
    url = f"{server.url}/projects/{project}/data?task={task_id}"
    with chromium.open_page(url, cookies=dict(person.cookies.items())) as page:
        # The editor is up when its ten choices are drawn, each with its key hint.
        hints = page.wait_for(
            "(() => { const c = [...document.querySelectorAll('.lsf-choice__item label')];"
            " return c.length === 10 && c.map(e => e.innerText.replace(/\\s+/g, '')); })()",
            timeout=180,
        )
        assert hints == [f"{d}[{d}]" for d in range(10)]
        image = page.wait_for(
            "(() => { const i = [...document.querySelectorAll('img')].find(e =>"
            " e.src.includes('local-files') && e.getBoundingClientRect().width > 100);"
            " if (!i || !i.complete) return null; const r = i.getBoundingClientRect();"
            " return {x: r.x, y: r.y, w: r.width, h: r.height}; })()"
        )
        assert (image["w"], image["h"]) == (320, 320)
        checked_js = (
            "(() => { const c = [...document.querySelectorAll('.lsf-choice__item input:checked')];"
            " return c.length"
            " && c.map(e => e.closest('label').innerText.replace(/\\s+/g, '')); })()"
        )
        # The editor binds its keys a moment after it draws: press again if nothing happened
        # (a second press only comes when the first one was not taken).
        checked = None
        for _ in range(6):
            time.sleep(2)
            page.press("3")
            with contextlib.suppress(TimeoutError):
                checked = page.wait_for(checked_js, timeout=5)
                break
        assert checked == ["3[3]"]
        shot = page.screenshot(tmp_path / "labeling-ui.png")
    with Image.open(shot) as picture:
        pixels = np.asarray(picture.convert("L"), dtype=np.int16)
    x, y = round(image["x"]), round(image["y"])
    drawn = pixels[y + 2 : y + 318, x + 2 : x + 318]
    # Crisp: only black and white; a smoothed upscale has a band of greys at every edge.
    assert ((drawn > 40) & (drawn < 215)).mean() < 0.002
    assert (drawn > 215).mean() == pytest.approx(0.25, abs=0.02)


@pytest.mark.server
def test_review_project_prefilled_idempotent_and_its_corrections_come_back(
    server: ls_server.LabelStudioServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`labelloop review push` makes one review project (consolidated label pre-selected, the
    answers and reasons shown), a retry adds nothing, and `review pull` brings back the
    reviewer's answers as expert annotations."""
    from labelloop import review

    monkeypatch.setenv("LABEL_STUDIO_API_KEY", server.admin_token)
    folder = server.files_root / "rv" / "images"
    folder.mkdir(parents=True)
    items = []
    for i in range(3):
        path = folder / f"{i}.png"
        Image.fromarray(np.full((8, 8), 40 * i, dtype=np.uint8)).save(path)
        items.append(Item(id=str(path), uri=str(path)))
    items_uri = str(tmp_path / "items.jsonl")
    storage.write_jsonl(
        items_uri, [i.to_import_record(TaskType.IMAGE_CLASSIFICATION) for i in items]
    )
    rows = [
        {"item": items[i].id, "label": "3", "confidence": 0.5 + 0.1 * i,
         "expected_error": 0.5 - 0.1 * i, "reasons": ["disagreement", "low posterior"],
         "annotations": [{"annotator": "ann1", "label": "3", "annotator_kind": "human"},
                         {"annotator": "gemini:flash", "label": "8", "annotator_kind": "model"}]}
        for i in range(3)
    ]  # fmt: skip
    review_uri = str(tmp_path / "review.jsonl")
    storage.write_jsonl(review_uri, rows)
    stt = str(tmp_path / "state")
    options = json.dumps({"url": server.url, "local_files_root": str(server.files_root)})
    push = ["review", "push", review_uri, "--provider", "label_studio", "--options", options]
    push += ["--task-type", "image_classification", "--labels", ",".join(map(str, range(10)))]
    push += ["--items", items_uri, "--state", stt]
    before = _project_count(server)
    assert main(push) == 0
    assert main(push) == 0  # a retry finds the same project
    assert _project_count(server) == before + 1
    (job,) = review.jobs(stt)
    assert f"{server.url}/projects/{job['external_id']}" in capsys.readouterr().out
    admin = httpx.Client(
        base_url=server.url, headers={"Authorization": f"Token {server.admin_token}"}
    )
    project = admin.get(f"/api/projects/{job['external_id']}/").json()
    assert project["title"].startswith("review · rv/images · ")
    assert project["maximum_annotations"] == 1
    assert '<Text name="review" value="$review"/>' in project["label_config"]
    tasks = admin.get(
        f"/api/projects/{job['external_id']}/export",
        params={"exportType": "JSON", "download_all_tasks": "true"},
    ).json()
    assert len(tasks) == 3  # nothing imported twice
    first = next(t for t in tasks if t["data"]["item_id"] == items[0].id)
    (prediction,) = admin.get("/api/predictions/", params={"task": first["id"]}).json()
    assert prediction["model_version"] == "labelloop-consolidated"
    assert prediction["result"][0]["value"]["choices"] == ["3"]
    assert prediction["score"] == pytest.approx(0.5)
    assert first["data"]["review"] == (
        "Consolidated: 3 (confidence 0.50) · Answers: ann1: 3; gemini:flash: 8 (model) · "
        "Why: disagreement; low posterior"
    )

    # The reviewer keeps two labels and corrects one.
    person = Annotator(server, "ann1@example.com")
    while (t := person.next_task(int(job["external_id"]))) is not None:
        label = "8" if t["data"]["item_id"] == items[0].id else "3"
        person.submit(
            int(job["external_id"]), t["id"], to_result(TaskType.IMAGE_CLASSIFICATION, label)
        )
    assert main(["review", "pull", "--state", stt]) == 0
    assert "3 reviewer answer(s) from 1 review job(s)" in capsys.readouterr().out
    got = {
        r["item"]: (r["annotator"], r["annotator_kind"], r["label"])
        for r in review.expert_answers(stt)
    }
    assert got == {
        items[0].id: ("ann1@example.com", "expert", "8"),
        items[1].id: ("ann1@example.com", "expert", "3"),
        items[2].id: ("ann1@example.com", "expert", "3"),
    }
