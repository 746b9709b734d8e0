"""``importPredictions``: predictions computed elsewhere, uploaded into a labeling task."""

from __future__ import annotations

from typing import Annotated, Union

import strawberry
from strawberry.file_uploads import Upload

from app.core.errors import DomainError, ErrorCode, ValidationFailed
from app.graphql.context import Info
from app.graphql.errors import ERROR_TYPES, Error, ErrorCodeEnum, to_graphql_error
from app.predictions.formats import ImportFormat, Limits
from app.tasks import imports
from app.tasks.graphql import ConceptMappingInput, LabelingTask
from app.tasks.models import ConceptMapping

ImportFormatEnum = strawberry.enum(
    ImportFormat,
    name="PredictionImportFormat",
    description="COCO_RESULTS: a JSON list of `{image_id|file_name, category_id, bbox [x,y,w,h] "
    "pixels, score}` or a COCO object with `images`/`categories`/`annotations`; YOLO: a zip of "
    "`<image>.txt` files, lines `class cx cy w h conf` (0..1), names from data.yaml, classes.txt "
    "or `names`; JSONL: labelstream's JSON Lines export.",
)


@strawberry.input(description="A file image reference (`image_id`, `file_name` or its stem) and its input.")
class ImageMappingInput:
    image: str
    input_id: strawberry.ID


@strawberry.input
class ImportPredictionsInput:
    task_id: strawberry.ID
    format: ImportFormatEnum  # type: ignore[valid-type]
    file: Upload = strawberry.field(description="The file, a part of a GraphQL multipart request.")
    concept_mapping: list[ConceptMappingInput] | None = strawberry.field(
        default=None,
        description="File category (name, category_id or YOLO class index) -> task concept; "
        "saved on the task's conceptMapping. Without it, categories match the task's mapping, "
        "then concept names (case-insensitive), then concept ids.",
    )
    image_mapping: list[ImageMappingInput] | None = strawberry.field(
        default=None,
        description="File image -> input. Without it an image matches an input id of the "
        "task's dataset by image_id, file name or file stem, then `metadata.file_name`.",
    )
    names: list[str] | None = strawberry.field(default=None, description="YOLO class names, by index.")
    skip_unknown_categories: bool = strawberry.field(
        default=False,
        description="Skip predictions whose category reaches no task concept instead of "
        "refusing the file (UNKNOWN_CATEGORY).",
    )


@strawberry.type(description="One problem of a refused file.")
class ImportProblem:
    line: int = strawberry.field(
        description="1-based line (JSONL, YOLO) or position in the results list (COCO); 0: the whole file."
    )
    file: str | None = strawberry.field(description="The zip member (YOLO) or section (COCO `images`).")
    code: ErrorCodeEnum  # type: ignore[valid-type]
    message: str


@strawberry.type(description="The file was refused and nothing was imported; `problems` lists up to 100.")
class ImportPredictionsError(Error):
    problems: list[ImportProblem]
    problems_count: int


@strawberry.type(description="What the import did; the task's metrics and queues moved with it.")
class ImportPredictionsSuccess:
    labeling_task: LabelingTask
    source_id: str = strawberry.field(
        description="`import:<hash>`: the `labeledByModelId` of the annotations it made; the same "
        "file imported again has the same id and changes nothing."
    )
    inputs: int
    predictions: int
    skipped: int = strawberry.field(description="Predictions of unknown categories skipped on request.")
    approved: int
    awaiting_review: int
    discarded: int


ImportPredictionsResult = Annotated[
    Union[ImportPredictionsSuccess, ImportPredictionsError, *ERROR_TYPES],  # type: ignore[valid-type]
    strawberry.union("ImportPredictionsResult"),
]


async def _read(file: Upload, max_bytes: int) -> bytes:
    read = getattr(file, "read", None)
    if read is None:
        raise ValidationFailed("file must be a part of a GraphQL multipart request", field="file")
    data = await read(max_bytes + 1)  # a byte over the limit is enough to refuse it
    if len(data) > max_bytes:
        raise ValidationFailed(
            f"the file is larger than {max_bytes} bytes", field="file", code=ErrorCode.TOO_LARGE
        )
    return bytes(data)


@strawberry.type
class Mutation:
    @strawberry.mutation(
        description="Import predictions computed elsewhere into a labeling task (owner, admin): "
        "they are stored like a model's and routed by the task's thresholds, concept mapping "
        "and review rules. Every line is checked first; any problem refuses the whole file."
    )
    async def import_predictions(self, info: Info, input: ImportPredictionsInput) -> ImportPredictionsResult:
        settings = info.context.settings
        try:
            req = imports.ImportRequest(
                task_id=str(input.task_id),
                format=ImportFormat(input.format),
                data=await _read(input.file, settings.max_import_bytes),
                concept_mapping=[
                    ConceptMapping(model_concept_id=str(m.model_concept_id), concept_id=str(m.concept_id))
                    for m in input.concept_mapping or []
                ],
                image_mapping={m.image: str(m.input_id) for m in input.image_mapping or []},
                names=input.names,
                skip_unknown_categories=input.skip_unknown_categories,
            )
            limits = Limits(max_bytes=settings.max_import_bytes, max_rows=settings.max_import_predictions)
            done = await imports.import_predictions(info.context.runtime, info.context.principal, req, limits)
        except imports.ImportRejected as exc:
            return ImportPredictionsError(
                message=exc.message,
                field=exc.field,
                code=exc.code,  # type: ignore[arg-type]
                problems=[
                    ImportProblem(line=p.line, file=p.file, code=p.code, message=p.message)  # type: ignore[arg-type]
                    for p in exc.problems
                ],
                problems_count=exc.total,
            )
        except DomainError as exc:
            return to_graphql_error(exc)  # type: ignore[return-value]
        return ImportPredictionsSuccess(
            labeling_task=LabelingTask.from_document(done.task),
            source_id=done.source_id,
            inputs=done.inputs,
            predictions=done.predictions,
            skipped=done.skipped,
            approved=done.outcome.approved,
            awaiting_review=done.outcome.awaiting_review,
            discarded=done.outcome.discarded,
        )
