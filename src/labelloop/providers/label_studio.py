"""Label Studio: your own team labels in a self-hosted Label Studio, through `label-studio-sdk`.

One Label Studio project per job. The project title carries the deterministic job key, so a
retried pipeline task finds the project it created and imports only the items not yet in it.
Several annotators label each task through the project's `maximum_annotations` (the
Community edition's next-task stream serves each task to that many different people).

Images: `gs://` URIs stay as they are and are resolved by a GCS import storage connected to
the project (presigned URLs, the server's own Google credentials); local files are served by
Label Studio's local-files storage (the server needs `LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED`
and `LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT`). Text is imported inline.

Collection reads the project's JSON export and applies the trust rules of
`label_studio_format.read_export` (one annotation per task and annotator; edits by others are
not trusted; cancelled annotations are counted, not used).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labelloop import storage
from labelloop.errors import InputError, ProviderError
from labelloop.providers import label_studio_review
from labelloop.providers.base import (
    CollectResult,
    Job,
    JobGone,
    LabelingTask,
    Progress,
    job_key,
)
from labelloop.providers.label_studio_format import (
    KEY_IN_TITLE,
    SMALL_IMAGE,
    answer_times,
    data_key,
    dataset_name,
    default_instructions,
    instructions_html,
    labeling_config,
    project_title,
    read_export,
    task_data,
    to_result,
)
from labelloop.providers.registry import register
from labelloop.providers.secrets import resolve_api_key
from labelloop.schemas import AnnotationValue, Item, Modality, Shape, TaskType

if TYPE_CHECKING:
    from label_studio_sdk import LabelStudio

log = logging.getLogger(__name__)

API_KEY_ENV = "LABEL_STUDIO_API_KEY"
URL_ENV = "LABEL_STUDIO_URL"
IMPORT_BATCH = 500

Prediction = tuple[AnnotationValue, float]


@dataclasses.dataclass(frozen=True, kw_only=True)
class LabelStudioOptions:
    """`provider_options` of Label Studio.

    Args:
        url: The server's base URL (default: `LABEL_STUDIO_URL`).
        api_key_secret: A Secret Manager version holding the API key (default: the key comes
            from `LABEL_STUDIO_API_KEY`).
        dataset: The name project titles start with (default: the items' common folder);
            titles read `<dataset> · round <n> · <date> · <job key's start>`.
        local_files_root: The server's `LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT` as a path on
            this machine (local image files must lie under it).
        model_version: Names the pre-annotations imported as predictions.
        timeout: Seconds per HTTP request.
    """

    url: str | None = None
    api_key_secret: str | None = None
    dataset: str = ""
    local_files_root: str | None = None
    model_version: str = "labelloop"
    timeout: float = 120.0

    def validate(self, field: str) -> None:
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise InputError(
                f"expected an http:// or https:// URL, got {self.url!r}", field=f"{field}.url"
            )
        if self.timeout <= 0:
            raise InputError("must be more than 0", field=f"{field}.timeout")


@register("label_studio", options=LabelStudioOptions)
class LabelStudioProvider:
    """Label items with people in a Label Studio server.

    Args:
        url: The server's base URL.
        api_key: A legacy token or a personal access token (read at the edge, never a parameter).
        dataset: The name project titles start with (default: the items' common folder).
        local_files_root: The server's `LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT`, as a path on
            this machine; local image files must lie under it.
        model_version: Names the pre-annotations imported as predictions.
        timeout: Seconds per HTTP request.
    """

    name = "label_studio"

    def __init__(
        self,
        *,
        url: str,
        api_key: str,
        dataset: str = "",
        local_files_root: str | None = None,
        model_version: str = "labelloop",
        timeout: float = 120.0,
    ) -> None:
        from label_studio_sdk import LabelStudio

        self.url = url.rstrip("/")
        self.dataset = dataset
        self.local_files_root = local_files_root
        self.model_version = model_version
        self.client: LabelStudio = LabelStudio(base_url=self.url, api_key=api_key, timeout=timeout)
        self._texts: dict[str, str] = {}
        self._last: dict[str, Any] = {}
        self._seconds: dict[str, dict[tuple[str, str], float]] = {}

    @classmethod
    def from_options(cls, options: LabelStudioOptions) -> LabelStudioProvider:
        """Build from checked options (see `LabelStudioOptions`). The URL falls back to
        `LABEL_STUDIO_URL`; the key comes from `LABEL_STUDIO_API_KEY` or the Secret Manager
        version named by `api_key_secret`."""
        url = (options.url or os.environ.get(URL_ENV, "")).strip()
        if not url:
            raise InputError(
                f"the Label Studio URL is missing (option 'url' or {URL_ENV})",
                field="provider_options.url",
            )
        api_key = resolve_api_key(
            env_var=API_KEY_ENV,
            secret=options.api_key_secret,
            field="provider_options.api_key_secret",
        )
        return cls(
            url=url,
            api_key=api_key,
            dataset=options.dataset,
            local_files_root=options.local_files_root,
            model_version=options.model_version,
            timeout=options.timeout,
        )

    # -- HTTP helpers -------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        """A REST call through the SDK's authenticated client, for endpoints it does not wrap."""
        # The SDK's own http client carries the auth header (legacy token or refreshed JWT).
        http = self.client._client_wrapper.httpx_client
        response = http.request(path.lstrip("/"), method=method, **kwargs)
        if response.status_code >= 400:
            raise ProviderError(
                f"Label Studio {method} {path} answered {response.status_code}: "
                f"{response.text[:300]}",
                status=response.status_code,
            )
        return response.json() if response.content else None

    def _find_project(self, key: str) -> tuple[int, str] | None:
        """The job's project (id, title): its title ends with the key's start and its
        description carries the whole key (titles of older versions: `labelloop <key>`)."""
        project: Any
        for project in self.client.projects.list(title=key[:KEY_IN_TITLE]):
            title = str(project.title or "")
            if project.id is None:
                continue
            if title == f"labelloop {key}" or key in str(project.description or ""):
                return int(project.id), title
        return None

    def _next_round(self, dataset: str) -> int:
        """1 + the rounds of this dataset already on the server (one project per round)."""
        prefix = f"{dataset} · round "
        rounds = [0]
        project: Any
        for project in self.client.projects.list(title=f"{dataset} · round"):
            title = str(project.title or "")
            if title.startswith(prefix):
                number = title.removeprefix(prefix).split(" ", 1)[0]
                rounds.append(int(number) if number.isdigit() else 0)
        return max(rounds) + 1

    def project_url(self, project_id: int | str) -> str:
        """Where people open the project in a browser."""
        return f"{self.url}/projects/{project_id}"

    # -- the provider interface ---------------------------------------------------------------

    def submit(
        self,
        items: Sequence[Item],
        task: LabelingTask,
        *,
        labelers_per_item: int,
        instructions: str = "",
        predictions: Mapping[str, Prediction] | None = None,
        key: str | None = None,
    ) -> Job:
        """Create or reuse the job's project and import the items it does not have yet.

        Args:
            items: What to label.
            task: Task type and label set.
            labelers_per_item: The project's `maximum_annotations`.
            instructions: Shown on top of every task and as the project instructions.
            predictions: Optional pre-annotations by item id: (value, score).
            key: The job key to use instead of the items' own (a routing provider passes
                its key, so a retry that routes a slightly different subset still finds the
                same project).
        """
        if labelers_per_item < 1:
            raise InputError("must be at least 1", field="labelers_per_item")
        key = key or job_key(self.name, items, task, labelers_per_item)
        text = (
            instructions or task.instructions or default_instructions(task.task_type, task.labels)
        )
        found = self._find_project(key)
        if found is None:
            # Check that Label Studio can open the files before creating anything.
            self._check_files(items, task.task_type)
            dataset = self.dataset or dataset_name(items)
            title = project_title(
                dataset, self._next_round(dataset), dt.date.today().isoformat(), key
            )
            created = self.client.projects.create(
                title=title,
                description=(
                    f"{len(items)} {task.task_type.value.replace('_', ' ')} items,"
                    f" {labelers_per_item} labeler(s) each. labelloop job {key}"
                ),
                label_config=labeling_config(
                    task.task_type,
                    task.labels,
                    text,
                    small_images=task.task_type.is_image and self._small_images(items),
                ),
                expert_instruction=instructions_html(text),
                show_instruction=True,
                maximum_annotations=labelers_per_item,
                # Every task gets the full overlap, not just a cohort.
                overlap_cohort_percentage=100,
                show_skip_button=True,
                model_version=self.model_version,
            )
            if created.id is None:
                raise ProviderError("Label Studio created a project without an id")
            project_id = int(created.id)
            log.info("created Label Studio project %s (%s)", project_id, title)
        else:
            project_id, title = found
            log.info("reusing Label Studio project %s (%s)", project_id, title)
        self._last = {"title": title, "url": self.project_url(project_id)}
        # One line people can act on (the local runner shows it on the console at once).
        log.info("labeling job: %s %s %s", self.name, title, self._last["url"])
        self._import_missing(project_id, items, task, predictions)
        return Job(self.name, key, str(project_id), len(items), labelers_per_item)

    def resume(self, job: Job, items: Sequence[Item], task: LabelingTask) -> Job:
        """Reattach an earlier run's project (by its id, else by its title) and import the
        job's items it lacks (a run killed mid-import, or a top-up).

        Raises:
            JobGone: The project was deleted in Label Studio.
        """
        if not job.external_id:
            # Killed before the project id was recorded: find or create it by its title.
            got = self.submit(items, task, labelers_per_item=job.labelers_per_item, key=job.key)
            return dataclasses.replace(got, collections=job.collections)
        project_id = int(job.external_id)
        response = self.client._client_wrapper.httpx_client.request(
            f"api/projects/{project_id}/", method="GET"
        )
        if response.status_code == 404:
            raise JobGone(f"Label Studio project {project_id} of job {job.key} no longer exists")
        if response.status_code >= 400:
            raise ProviderError(
                f"Label Studio GET project {project_id} answered {response.status_code}"
            )
        self._last = {"url": self.project_url(project_id)}
        log.info("labeling job: %s %s", self.name, self._last["url"])
        self._import_missing(project_id, items, task, None)
        return dataclasses.replace(job, items=len(items))

    def top_up(self, job: Job, items: Sequence[Item], task: LabelingTask) -> Job:
        """Add items to the job's project in place (`items`: the job's items, old and new)."""
        return self.resume(job, items, task)

    def _import_missing(
        self,
        project_id: int,
        items: Sequence[Item],
        task: LabelingTask,
        predictions: Mapping[str, Prediction] | None,
    ) -> None:
        present = self._present_items(project_id, task.task_type)
        missing = [i for i in items if i.id not in present]
        if missing:
            # Task records first: a local file outside the document root fails here, with
            # the setting to change, before any storage is connected.
            records = [self._task_record(i, task, predictions) for i in missing]
            self._connect_storages(project_id, missing, task.task_type)
            for start in range(0, len(records), IMPORT_BATCH):
                # Plain task dicts: the SDK's request type is the same JSON.
                batch: Any = records[start : start + IMPORT_BATCH]
                self.client.projects.import_tasks(project_id, request=batch)
            log.info("imported %d task(s), %d already present", len(missing), len(present))

    def _check_files(self, items: Sequence[Item], task_type: TaskType) -> None:
        """Local image files need the document root: say so before anything is created."""
        if task_type.is_image:
            for item in items:
                self._image_url(item)

    def _small_images(self, items: Sequence[Item]) -> bool:
        """Whether the first readable image is small enough to be drawn enlarged and crisp."""
        import io

        from PIL import Image, UnidentifiedImageError

        for item in items[:3]:
            uri = str(item.uri or "")
            if not uri or uri.startswith(("http://", "https://")):
                continue
            try:
                with Image.open(io.BytesIO(storage.read_bytes(uri))) as image:
                    return max(image.size) <= SMALL_IMAGE
            except (OSError, UnidentifiedImageError, ValueError) as exc:
                log.debug("cannot read the size of %s: %s", uri, exc)
        return False

    def _present_items(self, project_id: int, task_type: TaskType) -> set[str]:
        tasks: Any = self.client.tasks.list(project=project_id, fields="all", page_size=500)
        return {str((t.data or {}).get("item_id")) for t in tasks}

    def _task_record(
        self, item: Item, task: LabelingTask, predictions: Mapping[str, Prediction] | None
    ) -> dict[str, Any]:
        text = None
        if task.task_type.is_text:
            text = item.text if item.text is not None else storage.read_text(str(item.uri))
        image_url = self._image_url(item) if task.task_type.is_image else None
        record: dict[str, Any] = {
            "data": task_data(item, task.task_type, image_url=image_url, text=text)
        }
        if predictions and item.id in predictions:
            value, score = predictions[item.id]
            record["predictions"] = [
                {
                    "result": to_result(task.task_type, value, text=text or ""),
                    "score": float(score),
                    "model_version": self.model_version,
                }
            ]
        return record

    def _image_url(self, item: Item) -> str:
        uri = str(item.uri)
        if storage.is_gcs(uri) or uri.startswith(("http://", "https://")):
            return uri
        path = Path(storage.local_path(uri)).resolve()
        if not self.local_files_root:
            raise InputError(
                f"{path} is a local file: Label Studio shows local files only from its"
                " local-files document root. Start the server with"
                " LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true and"
                " LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=<a folder above your images>, and set"
                " the same folder as provider_options.local_files_root"
                " (docs/guide-label-studio.md)",
                field="provider_options.local_files_root",
            )
        root = Path(self.local_files_root).resolve()
        if not path.is_relative_to(root):
            raise InputError(
                f"{path} is not under local_files_root {root}: Label Studio serves local files"
                " only from below LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT (move the images there,"
                " or point both at a folder above them)",
                field="provider_options.local_files_root",
            )
        return "/data/local-files/?d=" + urllib.parse.quote(str(path.relative_to(root)))

    def _connect_storages(
        self, project_id: int, items: Sequence[Item], task_type: TaskType
    ) -> None:
        """Connect the storages that let Label Studio open the items' files (once per place)."""
        from label_studio_sdk.core.api_error import ApiError

        if not task_type.is_image:
            return
        uris = [str(i.uri) for i in items if i.uri]
        buckets = sorted({storage.split_gcs(u)[0] for u in uris if storage.is_gcs(u)})
        if buckets:
            existing = {s.bucket for s in self.client.import_storage.gcs.list(project=project_id)}
            for bucket in buckets:
                if bucket not in existing:
                    # presign: the browser gets signed URLs; no sync, tasks are imported by us.
                    self.client.import_storage.gcs.create(
                        project=project_id,
                        bucket=bucket,
                        presign=True,
                        use_blob_urls=False,
                        title=f"labelloop {bucket}",
                    )
        local = [
            u for u in uris if not storage.is_gcs(u) and "://" not in u.removeprefix("file://")
        ]
        if local:
            # One storage per folder: Label Studio refuses the document root itself.
            folders = sorted({str(Path(storage.local_path(u)).resolve().parent) for u in local})
            root = str(Path(self.local_files_root or "/").resolve())
            if root in folders:
                raise InputError(
                    f"local files must lie in a subfolder of local_files_root {root}, not in it",
                    field="provider_options.local_files_root",
                )
            existing_paths = {
                s.path for s in self.client.import_storage.local.list(project=project_id)
            }
            for folder in folders:
                if folder not in existing_paths:
                    try:
                        self.client.import_storage.local.create(
                            project=project_id,
                            path=folder,
                            use_blob_urls=False,
                            title="labelloop files",
                        )
                    except ApiError as exc:
                        raise ProviderError(
                            f"Label Studio answered {exc.status_code} to the local-files storage"
                            f" {folder}: the server needs"
                            " LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true and"
                            f" LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={root} (or a folder above"
                            " it; docs/guide-label-studio.md). It said:"
                            f" {str(exc.body)[:200]}",
                            status=exc.status_code,
                        ) from None

    def export(self, job: Job) -> list[dict[str, Any]]:
        """The project's full JSON export (every task, with annotations)."""
        tasks = self._request(
            "GET",
            f"api/projects/{int(job.external_id)}/export",
            params={"exportType": "JSON", "download_all_tasks": "true"},
        )
        if not isinstance(tasks, list):
            raise ProviderError("Label Studio export is not a list of tasks")
        return tasks

    def _annotator_names(self) -> dict[str, str]:
        return {str(u.id): str(u.email or f"ls-user-{u.id}") for u in self.client.users.list()}

    def _read(self, job: Job, task: LabelingTask | None = None) -> tuple[Any, list[dict]]:
        project = self.client.projects.get(int(job.external_id))
        task_type, labels = _task_from_config(str(project.label_config or ""))
        names = self._annotator_names()
        tasks = self.export(job)
        self._remember(job, tasks, names, task_type)
        self._last["title"] = str(project.title or "")
        read = read_export(
            tasks,
            task_type=task.task_type if task else task_type,
            labels=task.labels if task else labels,
            source=f"label_studio:{self.url}/projects/{job.external_id}",
            annotator_name=lambda uid: names.get(uid, f"ls-user-{uid}"),
        )
        return read, tasks

    def _remember(
        self, job: Job, tasks: list[dict], names: dict[str, str], task_type: TaskType
    ) -> None:
        """Per-annotator answers, skips and time for `summary`; time per answer for
        `work_seconds` (one read of the export)."""
        people, self._seconds[job.key] = answer_times(tasks, names, task_type)
        self._last = {
            **self._last,
            "url": self.project_url(job.external_id),
            "annotators": people,
        }

    def summary(self) -> dict[str, Any]:
        """The project's title and URL, and per-annotator answers, skips and labeling time."""
        return dict(self._last)

    def progress(self, job: Job) -> Progress:
        read, _ = self._read(job)
        per_item: dict[str, int] = {}
        for a in read.annotations:
            per_item[a.item] = per_item.get(a.item, 0) + 1
        done = sum(1 for n in per_item.values() if n >= job.labelers_per_item)
        return Progress(done, job.items)

    def collect(self, job: Job) -> CollectResult:
        read, _ = self._read(job)
        if read.skipped:
            log.info("%d cancelled (skipped) annotation(s) not used", read.skipped)
        return CollectResult(read.annotations, read.bad, skipped=read.skipped)

    def submit_review(
        self, rows: Sequence[Any], items: Sequence[Item], task: LabelingTask, *, key: str
    ) -> Job:
        """A review project for the quality step's review rows (`label_studio_review`)."""
        return label_studio_review.submit_review(self, rows, items, task, key=key)

    def collect_review(self, job: Job, items: Sequence[str]) -> CollectResult:
        """The reviewers' answers, as `expert` annotations (the project has just `items`)."""
        return label_studio_review.collect_review(self, job)

    def work_seconds(self, job: Job) -> dict[tuple[str, str], float]:
        """Seconds each answer took (`lead_time`) by (item, annotator), as of the last read of
        the job (`collect`), for pricing people by the hour (`labelloop.accounting`)."""
        if job.key not in self._seconds:
            self._read(job)
        return dict(self._seconds[job.key])

    def cancel(self, job: Job) -> None:
        """Delete the tasks nobody has annotated yet; annotated tasks (and labels) stay."""
        tasks: Any = self.client.tasks.list(
            project=int(job.external_id), fields="all", page_size=500
        )
        for t in tasks:
            if not (t.total_annotations or 0) and t.id is not None:
                self.client.tasks.delete(str(t.id))


def _task_from_config(config: str) -> tuple[TaskType, tuple[str, ...]]:
    """Recover task type and labels from a config `labeling_config` wrote (for `progress`)."""
    import xml.etree.ElementTree as ET

    root = ET.fromstring(config)  # noqa: S314 - our own server's config, written by us
    modality = Modality.IMAGE if root.find("Image") is not None else Modality.TEXT
    choices = root.find("Choices")
    if choices is not None:
        multiple = choices.attrib.get("choice") == "multiple"
        shape, options = (Shape.MULTI if multiple else Shape.SINGLE), choices.findall("Choice")
    elif (rect := root.find("RectangleLabels")) is not None:
        shape, options = Shape.BOXES, list(rect)
    elif (spans := root.find("Labels")) is not None:
        shape, options = Shape.SPANS, list(spans)
    else:
        raise ProviderError("the project's labeling config was not written by labelloop")
    try:
        task_type = TaskType.of(modality, shape)
    except ValueError as exc:
        raise ProviderError(f"the project's labeling config: {exc}") from None
    return task_type, tuple(c.attrib["value"] for c in options)


__all__ = ["LabelStudioProvider", "data_key", "dataset_name", "project_title"]
