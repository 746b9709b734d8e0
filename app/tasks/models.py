"""Labeling tasks. Field names follow Clarifai's LabelingTask where one exists."""

from __future__ import annotations

import enum

from pydantic import BaseModel
from pymongo import ASCENDING, DESCENDING, IndexModel

from app.core.documents import BaseDocument


class TaskStatus(enum.StrEnum):
    QUEUED = "QUEUED"
    IN_PROGRESS = "IN_PROGRESS"
    IDLE = "IDLE"
    DONE = "DONE"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class TaskPriority(enum.StrEnum):
    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"


class TaskType(enum.StrEnum):
    CONCEPTS_CLASSIFICATION = "CONCEPTS_CLASSIFICATION"
    BOUNDING_BOX_DETECTION = "BOUNDING_BOX_DETECTION"
    POLYGON_DETECTION = "POLYGON_DETECTION"


class ReviewStrategy(enum.StrEnum):
    NONE = "NONE"
    PARTITIONED = "PARTITIONED"


class PartitionStrategy(enum.StrEnum):
    EVENLY = "EVENLY"
    WEIGHTED = "WEIGHTED"


class ThresholdRange(BaseModel):
    """Clarifai ThresholdRange: at/above ``upper`` approve, between review, below discard."""

    lower: float = 0.5
    upper: float = 0.9
    lower_inclusive: bool = True
    upper_inclusive: bool = True


class ConceptThreshold(BaseModel):
    concept_id: str
    range: ThresholdRange


class ConceptMapping(BaseModel):
    """Many-to-one: several model concepts may map to one app concept."""

    model_concept_id: str
    concept_id: str


class ReviewerWeight(BaseModel):
    user_id: str
    weight: float = 1.0


class TaskMetrics(BaseModel):
    """Counters maintained atomically with ``$inc`` (MONGODB.md, contract 5)."""

    inputs_total: int = 0  # while seeding: the dataset's count when the run started
    inputs_seeded: int = 0  # inputs whose work is stored (claimable); = inputs_total once seeded
    inputs_processed: int = 0
    inputs_failed: int = 0
    annotations_approved: int = 0
    annotations_awaiting_review: int = 0
    annotations_discarded: int = 0
    inputs_reviewed: int = 0  # these two are refreshed from the assignments (app/review/metrics.py)
    inputs_to_review: int = 0


class LabelingTask(BaseDocument):
    app_id: str
    name: str
    dataset_id: str
    model_id: str | None = None
    workflow_id: str | None = None
    task_type: TaskType = TaskType.CONCEPTS_CLASSIFICATION
    concept_ids: list[str]
    concept_mapping: list[ConceptMapping] = []
    thresholds: ThresholdRange = ThresholdRange()
    concept_thresholds: list[ConceptThreshold] = []
    auto_annotation: bool = True
    delete_previous_annotations: bool = False
    reviewer_ids: list[str] = []
    labeler_ids: list[str] = []
    review_strategy: ReviewStrategy = ReviewStrategy.PARTITIONED
    partition_strategy: PartitionStrategy = PartitionStrategy.EVENLY
    reviewer_weights: list[ReviewerWeight] = []
    approval_threshold_reviewers: int = 1
    # Percentage (0..100) of auto-approved annotations also sent to review (app/review/audit.py).
    audit_percent: float = 0.0
    priority: TaskPriority = TaskPriority.MEDIUM
    status: TaskStatus = TaskStatus.QUEUED
    metrics: TaskMetrics = TaskMetrics()
    run: int = 0  # bumped by every start/retry; jobs of an older run do nothing
    # a run over more than ``task_seed_sync_limit`` inputs is seeded by workers
    # (``app/tasks/seeding.py``); until that ends the task cannot close
    seeding: bool = False
    watch_dataset: bool = False  # keep labeling inputs added later (IDLE instead of DONE)
    # People's annotations made in the task go to review; None: on when the task names reviewers.
    review_human_annotations: bool | None = None
    created_by: str

    def reviewers(self) -> list[str]:
        """Who reviews: the named reviewers, else the task's creator ("assign yourself")."""
        return list(self.reviewer_ids) or [self.created_by]

    def labelers(self) -> list[str]:
        """Who labels by hand: the named labelers, else the task's creator."""
        return list(self.labeler_ids) or [self.created_by]

    def reviews_human_annotations(self) -> bool:
        if self.review_human_annotations is not None:
            return self.review_human_annotations
        return bool(self.reviewer_ids)

    class Settings:
        name = "labeling_tasks"
        indexes = [
            IndexModel([("app_id", ASCENDING)]),
            IndexModel([("dataset_id", ASCENDING)]),
        ]


class InputState(enum.StrEnum):
    PENDING = "PENDING"
    DONE = "DONE"
    FAILED = "FAILED"


class FailureCode(enum.StrEnum):
    """Why an input of a task FAILED (``TaskInput.code``); every one can be retried with
    ``retryFailedInputs``. A model that cannot run as stored fails with its adapter error's
    code instead (``UNKNOWN_ADAPTER``, ``ADAPTER_MISMATCH``, ``INVALID``)."""

    FETCH_FAILED = "FETCH_FAILED"  # a URL input could not be fetched
    FETCH_FORBIDDEN = "FETCH_FORBIDDEN"  # its host resolves to a private address
    FETCH_TIMEOUT = "FETCH_TIMEOUT"
    TOO_LARGE = "TOO_LARGE"  # over the image size limits
    IMAGE_UNDECODABLE = "IMAGE_UNDECODABLE"
    INPUT_MISSING = "INPUT_MISSING"  # deleted, or its bytes are gone
    UNSUPPORTED_INPUT = "UNSUPPORTED_INPUT"  # no model of the task reads its kind
    MODEL_ERROR = "MODEL_ERROR"  # the model raised on the batch
    INFERENCE_TIME_LIMIT = "INFERENCE_TIME_LIMIT"  # the batch outlived batch_inference_limit_s
    RETRIES_EXHAUSTED = "RETRIES_EXHAUSTED"  # servers unreachable for batch_max_attempts claims
    # a model on an inference server (app/models/adapters/remote): no answer after the retries,
    # an error answer, or an address the settings do not allow
    INFERENCE_SERVER_UNAVAILABLE = "INFERENCE_SERVER_UNAVAILABLE"
    INFERENCE_SERVER_ERROR = "INFERENCE_SERVER_ERROR"
    INFERENCE_SERVER_FORBIDDEN = "INFERENCE_SERVER_FORBIDDEN"


class TaskInput(BaseDocument):
    """One input's state in one task (``_id`` = ``<task_id>:<input_id>``).

    It makes a re-run job harmless (inputs already DONE are skipped) and is the per-input
    failure log (``code``, ``message``) that "retry failed inputs" works from. The counts are
    what this input contributed, so the task's metrics can be recounted exactly.
    """

    app_id: str
    task_id: str
    input_id: str
    state: InputState = InputState.PENDING
    code: str | None = None
    message: str | None = None
    attempts: int = 0
    approved: int = 0
    awaiting_review: int = 0
    discarded: int = 0

    class Settings:
        name = "task_inputs"
        indexes = [
            IndexModel([("task_id", ASCENDING), ("state", ASCENDING)]),
            IndexModel([("app_id", ASCENDING)]),
            IndexModel([("input_id", ASCENDING)]),  # deleted inputs leave their tasks
        ]


class BatchState(enum.StrEnum):
    PENDING = "PENDING"  # waiting for a worker (or for ``available_at`` after a transient error)
    LEASED = "LEASED"  # a worker holds it until ``lease_until`` and renews that while it works
    DONE = "DONE"


PRIORITY_RANK = {TaskPriority.LOW: 0, TaskPriority.MEDIUM: 1, TaskPriority.HIGH: 2}


class BatchKind(enum.StrEnum):
    INPUTS = "INPUTS"  # label ``input_ids``
    SEED = "SEED"  # store the next chunk of the run's work, from ``cursor`` (app/tasks/seeding.py)


class TaskBatch(BaseDocument):
    """One batch of a task's run, the unit a worker claims (``app/tasks/scheduler.py``).

    A ``SEED`` unit is claimed the same way; each claim stores one chunk of the run's inputs
    after ``cursor`` (their task inputs and batches) and puts the unit back with the new
    cursor, ``seeded`` count and ``rank`` (= chunks done, so seeding keeps ahead of labeling
    while runs of one priority still take turns); ``attempts - chunks`` are its failed claims.

    ``_id`` is ``<task_id>:<run>:<part>:<k>``, so creating the batches of a run twice is
    harmless. Workers take the claimable batch with the highest ``priority``, then the lowest
    ``rank`` (its index within its run: runs of the same priority take turns, so one big task
    cannot starve another app's), then the oldest ``seq``. Times are epoch seconds (numbers):
    a top-level date ``$set`` on an existing document is not kept as a date by every engine
    (MONGODB.md, rule 7).
    """

    app_id: str
    task_id: str
    run: int
    kind: BatchKind = BatchKind.INPUTS
    input_ids: list[str]
    retry: bool = False
    priority: int = 1
    rank: int = 0
    seq: str = ""
    state: BatchState = BatchState.PENDING
    available_at: float = 0.0
    lease_owner: str | None = None
    lease_until: float = 0.0
    attempts: int = 0
    cursor: str = ""  # SEED: the last input id seeded
    seeded: int = 0  # SEED: inputs seeded so far
    chunks: int = 0  # SEED: chunks seeded so far

    def failed_claims(self) -> int:
        return self.attempts - self.chunks

    class Settings:
        name = "task_batches"
        indexes = [
            IndexModel(
                [("state", ASCENDING), ("priority", DESCENDING), ("rank", ASCENDING), ("seq", ASCENDING)]
            ),
            IndexModel([("task_id", ASCENDING)]),
        ]
