"""docs/guide-label-studio.md, followed as written against a real Label Studio server.

The guide's shell blocks run with `/home/me` standing for a temporary home; its YAML is the
config the pipeline runs with (only the server's URL and the waits are replaced); two
annotators label through Label Studio's next-task API while the pipeline waits, as people at
the UI would; the console and the report must show what the guide says they show.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from labelloop.providers.label_studio_format import to_result
from labelloop.schemas import TaskType
from tests.servers import label_studio as ls_server

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "guide-label-studio.md"
HOME = "/home/me"


def blocks(kind: str) -> list[str]:
    """The guide's fenced blocks of one kind (`bash`, `yaml`, `text`), in order."""
    text = GUIDE.read_text(encoding="utf-8")
    return [b for k, b in re.findall(r"```(\w+)\n(.*?)```", text, re.S) if k == kind]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    try:
        ls_server.ensure_installed()
    except ls_server.Unavailable as exc:
        pytest.skip(str(exc))
    srv = ls_server.start(tmp_path_factory.mktemp("label-studio"))
    yield srv
    srv.stop()


def test_the_guide_matches_the_server_the_suite_runs() -> None:
    install, files, start, users, run, *_ = blocks("bash")
    assert f'"{ls_server.REQUIREMENT}"' in install
    # The settings the guide starts the server with are the ones the tested server gets.
    server_source = Path(ls_server.__file__).read_text(encoding="utf-8")
    for setting in re.findall(r"export (LABEL_STUDIO_\w+)=", files):
        assert f"{setting}=" in server_source, setting
    assert "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true" in files
    for flag in ("--user-token", "--enable-legacy-api-token", "--no-browser"):
        assert flag in start, flag
        assert flag in server_source, flag
    token = re.search(r"--user-token (\w+)", start)
    assert token
    assert len(token.group(1)) == 40
    assert f"LABEL_STUDIO_API_KEY={token.group(1)}" in run
    for email in re.findall(r"--username (\S+)", users):
        assert email in ls_server.ANNOTATORS


def _project_ids(server: ls_server.LabelStudioServer) -> set[int]:
    response = httpx.get(
        f"{server.url}/api/projects/",
        headers={"Authorization": f"Token {server.admin_token}"},
        params={"page_size": 100},
    )
    response.raise_for_status()
    return {int(p["id"]) for p in response.json()["results"]}


def _label_new_project(
    server: ls_server.LabelStudioServer, truth: dict[str, str], people_count: int, known: set[int]
) -> None:
    """Annotators at the UI: wait for the run's project (one not in `known`), then answer
    until nothing is left."""
    admin = httpx.Client(
        base_url=server.url, headers={"Authorization": f"Token {server.admin_token}"}, timeout=60
    )
    deadline = time.monotonic() + 300
    project = None
    while project is None and time.monotonic() < deadline:
        found = admin.get("/api/projects/", params={"title": "my-images"}).json()["results"]
        # The run's project: the one not there before it started.
        new = [p["id"] for p in found if p["id"] not in known]
        project = max(new) if new else None
        time.sleep(0.5)
    assert project is not None
    people = [
        httpx.Client(base_url=server.url, headers={"Authorization": f"Token {token}"}, timeout=60)
        for email, token in list(server.annotator_tokens.items())[:people_count]
    ]
    # Tasks arrive in batches while the step imports them: keep asking until all are done.
    while time.monotonic() < deadline:
        served = False
        for person in people:
            response = person.get(f"/api/projects/{project}/next/")
            if response.status_code == 404:
                continue
            task = response.json()
            served = True
            label = truth[Path(task["data"]["item_id"]).name]
            person.post(
                f"/api/tasks/{task['id']}/annotations/",
                params={"project": project},
                json={
                    "result": to_result(TaskType.IMAGE_CLASSIFICATION, label),
                    "lead_time": 2.5,
                    "project": project,
                    "task": task["id"],
                },
            ).raise_for_status()
        if not served:
            stats = admin.get(f"/api/projects/{project}/").json()
            total = stats.get("task_number") or 0
            if total and stats.get("num_tasks_with_annotations") == total:
                return
            time.sleep(0.5)


@pytest.mark.slow
@pytest.mark.server
def _run_local(config_path: Path, server: ls_server.LabelStudioServer, **env: str) -> str:
    """The guide's run command (`make run CONFIG=...` runs this) with the Label Studio key in the
    environment and no other LABEL* variable; its console output (a failure shows both streams)."""
    done = subprocess.run(
        [sys.executable, "-m", "pipelines", "run-local", "--config", str(config_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("LABEL")},
            "LABEL_STUDIO_API_KEY": server.admin_token,
            **env,
        },
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_your_images_your_team_label_studio(
    server: ls_server.LabelStudioServer, tmp_path: Path
) -> None:
    from labelloop.sample_data import materialize_digits

    home = tmp_path / "home"
    sample = materialize_digits(home / ".cache" / "labelloop", limit=60)
    # The guide's path: ~/.cache/labelloop/digits/images/.
    shutil.move(str(Path(sample.source_uri).parent), str(home / ".cache/labelloop/digits"))
    truth = {
        Path(row["item"]).name: row["label"]
        for row in csv.DictReader(
            (home / ".cache/labelloop/digits/truth.csv").read_text().splitlines()
        )
    }

    def here(text: str) -> str:
        # The guide's document root is the tested server's; the rest of /home/me is `home`.
        text = text.replace(f"{HOME}/labelloop-files", str(server.files_root))
        return text.replace(HOME, str(home)).replace("http://localhost:8080", server.url)

    _, files, _, _, run, again, *_ = blocks("bash")
    subprocess.run(
        ["bash", "-euo", "pipefail", "-c", here(files)],
        check=True,
        env={"HOME": str(home), "PATH": "/usr/bin:/bin"},
    )
    assert len(list((server.files_root / "my-images").glob("*.png"))) == 50

    config = yaml.safe_load(here(blocks("yaml")[0]))
    config["pipeline"]["provider_options"].update(wait_seconds=240, poll_seconds=1)
    config["local"] = {"runs_dir": str(tmp_path / "runs")}
    config_path = tmp_path / "my-label-studio.yaml"
    config_path.write_text(yaml.safe_dump(config))
    assert "make run CONFIG=configs/my-label-studio.yaml" in run

    def make_run() -> str:
        """`make run CONFIG=...` (the Makefile's run target) while two people label."""
        people = threading.Thread(
            target=_label_new_project, args=(server, truth, 2, _project_ids(server)), daemon=True
        )
        people.start()
        out = _run_local(config_path, server, XDG_CACHE_HOME=str(home / ".cache"))
        people.join(timeout=60)
        return out

    out = make_run()
    title = re.search(r"job: label_studio (my-images · round 1 · \S+ · \w{8}) (\S+)", out)
    assert title, out
    assert title.group(2).startswith(f"{server.url}/projects/")
    assert "waiting for people: 0/30 items labeled" in out
    assert "30/30 items labeled (complete)" in out
    assert "ledger: 0 open job(s), 0 item(s) queued, 30 labeled, 20 in the pool" in out
    state_command = f"labelloop state {home}/labelloop-state"
    assert f"see: .venv/bin/{state_command}" in out
    assert re.search(r"ok   train-model", out), out
    report = re.search(r"report: (\S+\.html)", out)
    assert report, out
    page = Path(report.group(1)).read_text(encoding="utf-8")
    for text in ("What to do next", "Labeling job", title.group(1), "seconds per answer"):
        assert text in page, text
    assert "2.5 s" in page  # Label Studio's lead time per answer
    assert state_command in page

    # "Run again": the next 20 images, in a new project (round 2), labeled, trained on.
    make, state = again.strip().splitlines()
    assert make == run.strip().splitlines()[-1]
    out = make_run()
    second = re.search(r"job: label_studio (my-images · round 2 · \S+ · \w{8}) (\S+)", out)
    assert second, out
    assert second.group(2) != title.group(2)
    assert "selected_count=20" in out
    assert "20/20 items labeled (complete)" in out
    assert re.search(r"ok   train-model", out), out
    shown = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", here(state)],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    expected = blocks("text")[1].strip().splitlines()
    # The guide's lines as written, but the first (its event count) and the elision.
    for line in expected[1:]:
        if line != "...":
            assert line in shown.splitlines(), (line, shown)


@pytest.mark.slow
@pytest.mark.server
def test_gemini_first_people_for_the_rest(
    server: ls_server.LabelStudioServer, tmp_path: Path
) -> None:
    """The guide's second config: Gemini (a loopback fake of Vertex AI) answers every digit,
    sure of the even ones; the odd ones go to a person in Label Studio."""
    import base64
    import hashlib

    from labelloop.sample_data import materialize_digits
    from tests.servers import gemini_fake

    sample = materialize_digits(tmp_path / "cache", limit=30)
    images = sorted(Path(sample.source_uri).glob("*.png"))[:20]
    folder = server.files_root / "gemini-images" / "my-images"
    folder.mkdir(parents=True)
    truth_rows = csv.DictReader(Path(sample.truth_uri).read_text().splitlines())
    by_name = {Path(r["item"]).name: r["label"] for r in truth_rows}
    by_bytes = {}
    for image in images:
        shutil.copy(image, folder / image.name)
        by_bytes[hashlib.sha256(image.read_bytes()).hexdigest()] = by_name[image.name]

    def model(body: dict[str, Any]) -> tuple[int, Any]:
        parts = body["contents"][0]["parts"]
        data = next(p["inlineData"]["data"] for p in parts if "inlineData" in p)
        # google-genai sends inline bytes URL-safe base64-encoded, without padding.
        raw = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
        label = by_bytes[hashlib.sha256(raw).hexdigest()]
        return 200, gemini_fake.answer(label, -0.01 if int(label) % 2 == 0 else -1.5)

    config = yaml.safe_load(blocks("yaml")[1])
    pipeline = config["pipeline"]
    pipeline["source_uri"] = str(folder)
    options = pipeline["provider_options"]
    options["human"]["options"].update(url=server.url, local_files_root=str(server.files_root))
    options.update(wait_seconds=240, poll_seconds=1)
    config["local"] = {"runs_dir": str(tmp_path / "runs")}
    people = threading.Thread(
        target=_label_new_project, args=(server, by_name, 1, _project_ids(server)), daemon=True
    )
    with gemini_fake.serve(model) as fake:
        options["gemini"]["base_url"] = fake.url
        config_path = tmp_path / "gemini.yaml"
        config_path.write_text(yaml.safe_dump(config))
        people.start()
        out = _run_local(config_path, server)
    people.join(timeout=60)
    evens = sum(1 for image in images if int(by_name[image.name]) % 2 == 0)
    # The same server already has this dataset's first round (the guide above): round 2.
    assert re.search(r"job: gemini_then_human my-images · round \d · \S+ · \w{8} http", out), out
    assert "gemini: auto-accept at confidence >= 0.9 (precision n/a on 0 calibration items);" in out
    assert f"{evens} by Gemini, {20 - evens} to people; estimated cost $" in out
    report = re.search(r"report: (\S+\.html)", out)
    assert report, out
    page = Path(report.group(1)).read_text(encoding="utf-8")
    for text in ("auto-accept threshold", "labeled by Gemini", "sent to people", "estimated cost"):
        assert text in page, text
