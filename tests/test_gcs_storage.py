"""labelloop.storage and gs:// stages: real google-cloud-storage against fake-gcs-server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

pytestmark = pytest.mark.server

BUCKET = "labelloop-gcs-test"


@pytest.fixture
def client(gcs_emulator: str) -> Any:
    """labelloop's own process-wide client, created fresh against the emulator."""
    from labelloop import storage

    client = storage.gcs_client()
    if client.lookup_bucket(BUCKET) is None:
        client.create_bucket(BUCKET)
    return client


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    return f"gs://{BUCKET}/{request.node.name}"


class PageCounter:
    """Wraps the client's `list_blobs` to record the page size asked for and the pages served."""

    def __init__(self, client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.page_sizes: list[int | None] = []
        self.pages = 0
        original = client.list_blobs

        def list_blobs(*args: Any, **kwargs: Any) -> Iterator[Any]:
            self.page_sizes.append(kwargs.get("page_size"))
            for page in original(*args, **kwargs).pages:
                self.pages += 1
                yield from page

        monkeypatch.setattr(client, "list_blobs", list_blobs)


def test_write_read_exists_round_trip(client, prefix):
    from labelloop import storage

    uri = storage.join(prefix, "a/b.jsonl")
    assert not storage.exists(uri)
    assert storage.write_jsonl(uri, [{"x": 1}, {"x": "é"}]) == 2
    assert storage.exists(uri)
    with storage.open_read(uri) as fh:
        rows = [json.loads(line) for line in fh]
    assert rows == [{"x": 1}, {"x": "é"}]
    storage.write_bytes(storage.join(prefix, "raw.bin"), b"\x00\x01")
    assert storage.read_bytes(storage.join(prefix, "raw.bin")) == b"\x00\x01"
    assert storage.is_dir(prefix)
    assert not storage.is_dir(storage.join(prefix, "nothing-here"))


def test_iter_files_follows_every_page(client, prefix, monkeypatch):
    from labelloop import storage

    names = [f"img/{i:03d}.png" for i in range(23)] + ["img/notes.txt", "img/sub/x.PNG"]
    for name in names:
        storage.write_bytes(storage.join(prefix, name), b"png")
    # A sibling folder sharing the name's prefix must not leak in.
    storage.write_bytes(f"{prefix}/img-other/y.png", b"png")
    counter = PageCounter(client, monkeypatch)

    found = list(storage.iter_files(f"{prefix}/img", suffixes=(".png",), page_size=4))

    expected = sorted(f"{prefix}/{n}" for n in names if n.lower().endswith(".png"))
    assert found == expected
    assert counter.page_sizes == [4]
    assert counter.pages == 7  # 25 objects, 4 per page


def test_generate_import_file_lists_a_gs_prefix_page_by_page(client, prefix, monkeypatch, tmp_path):
    import io

    from PIL import Image

    from labelloop import storage
    from labelloop.stages.generate_import_file import generate_import_file

    png = io.BytesIO()
    Image.new("L", (2, 2)).save(png, format="PNG")  # images are verified at import
    for i in range(11):
        storage.write_bytes(f"{prefix}/src/{i:02d}.png", png.getvalue())
    storage.write_text(
        f"{prefix}/src/broken.png.jsonl", "not an image listing\n"
    )  # ignored: image tasks keep image files only
    # The stage lists with the default page size; make pages small to prove it follows them all.
    monkeypatch.setitem(storage.iter_files.__kwdefaults__, "page_size", 3)
    counter = PageCounter(client, monkeypatch)

    result = generate_import_file(
        source_uri=f"{prefix}/src",
        task_type="image_classification",
        state_uri=f"{prefix}/state",
        output_uri=f"{prefix}/out/import.jsonl",
        rejects_uri=f"{prefix}/out/rejects.jsonl",
    )

    assert result.listed == 11
    assert result.new_items == 11
    assert counter.page_sizes[0] == 3
    assert counter.pages >= 4  # 12 objects under src/, 3 per page
    with storage.open_read(f"{prefix}/out/import.jsonl") as fh:
        records = [json.loads(line) for line in fh]
    assert sorted(r["imageGcsUri"] for r in records) == [
        f"{prefix}/src/{i:02d}.png" for i in range(11)
    ]


def test_labeled_import_file_on_gcs_uses_earlier_rounds_and_reports_bad_rows(client, prefix):
    from labelloop import state, storage
    from labelloop.vertex_labels import write_labeled_import_file

    images = [f"{prefix}/img/{i}.png" for i in range(4)]
    storage.write_jsonl(
        state.path(f"{prefix}/state", state.LABELS, "round1.jsonl"),
        [{"item": images[0], "label": "cat", "trainable": True}],
    )
    storage.write_jsonl(
        f"{prefix}/consolidated.jsonl",
        [
            {"item": images[1], "label": "dog", "trainable": True},
            {"item": images[2], "label": "cat", "trainable": False},
            {"item": images[3], "label": None, "trainable": True},
        ],
    )
    storage.write_jsonl(f"{prefix}/items.jsonl", [{"imageGcsUri": u} for u in images])

    result = write_labeled_import_file(
        consolidated_uri=f"{prefix}/consolidated.jsonl",
        items_uri=f"{prefix}/items.jsonl",
        task_type="image_classification",
        state_uri=f"{prefix}/state",
        output_uri=f"{prefix}/labeled.jsonl",
        rejects_uri=f"{prefix}/rejects.jsonl",
    )

    assert (result.items, result.untrainable, result.bad_records) == (2, 1, 1)
    assert result.labels == ("cat", "dog")
    with storage.open_read(f"{prefix}/labeled.jsonl") as fh:
        records = {r["imageGcsUri"]: r for r in map(json.loads, fh)}
    assert records[images[0]]["classificationAnnotation"] == {"displayName": "cat"}
    assert records[images[1]]["classificationAnnotation"] == {"displayName": "dog"}
    with storage.open_read(f"{prefix}/rejects.jsonl") as fh:
        (reject,) = [json.loads(line) for line in fh]
    assert reject["line"] == 3
    assert reject["source"] == f"{prefix}/consolidated.jsonl"


def test_vertex_model_record_round_trip_on_gcs(client, prefix):
    from labelloop.vertex_labels import latest_vertex_model, record_vertex_model

    assert latest_vertex_model(f"{prefix}/state") == ("", "")
    name = "projects/p/locations/europe-west4/models/42"
    record_vertex_model(
        f"{prefix}/state", resource_name=name, uri="https://x", task_type="image_classification"
    )
    assert latest_vertex_model(f"{prefix}/state") == (
        name,
        f"https://europe-west4-aiplatform.googleapis.com/v1/{name}",
    )
    override = "projects/p/locations/us-central1/models/7"
    assert latest_vertex_model(f"{prefix}/state", override=override)[0] == override
