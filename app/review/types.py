"""GraphQL types of review figures, shared by the task type (app/tasks/graphql.py) and the
review domain's own queries (kept apart so neither imports the other)."""

from __future__ import annotations

import strawberry

from app.graphql.context import Info
from app.review import metrics
from app.users.graphql import User
from app.users.models import User as UserDoc


@strawberry.type(description="One reviewer's share of a task's review.")
class ReviewerProgress:
    user_id: strawberry.ID
    assigned: int = strawberry.field(
        description="Review items given to them (inputs; slots under consensus)."
    )
    done: int
    percent: float

    @strawberry.field
    async def user(self, info: Info) -> User | None:
        doc = await info.context.loader(UserDoc).load(str(self.user_id))
        return User.from_document(doc) if doc else None


@strawberry.type(description="Review and human-labeling figures of a task (exact, from its assignments).")
class TaskReview:
    inputs_to_review: int
    inputs_reviewed: int
    reviewed_percent: float = strawberry.field(description="Clarifai's '% reviewed'.")
    review_complete: bool = strawberry.field(
        description="Labeling is over and nothing waits for review: the 'Review' button is inactive."
    )
    inputs_to_label: int = strawberry.field(description="Inputs still to label by people.")
    labeling_active: bool = strawberry.field(description="inputsToLabel > 0: the 'Label' button is active.")
    reviewers: list[ReviewerProgress]

    @classmethod
    def from_metrics(cls, value: metrics.ReviewMetrics) -> TaskReview:
        return cls(
            inputs_to_review=value.inputs_to_review,
            inputs_reviewed=value.inputs_reviewed,
            reviewed_percent=value.reviewed_percent,
            review_complete=value.review_complete,
            inputs_to_label=value.inputs_to_label,
            labeling_active=value.labeling_active,
            reviewers=[
                ReviewerProgress(
                    user_id=strawberry.ID(r.user_id), assigned=r.assigned, done=r.done, percent=r.percent
                )
                for r in value.reviewers
            ],
        )


@strawberry.type(description="Who labeled a task's annotations: a person or a model, and how many.")
class LabeledBy:
    kind: str = strawberry.field(description="USER or MODEL.")
    id: strawberry.ID
    name: str = strawberry.field(description="The user's email or the model's name.")
    annotations: int

    @classmethod
    def from_value(cls, value: metrics.LabeledBy) -> LabeledBy:
        return cls(
            kind=value.kind, id=strawberry.ID(value.id), name=value.name, annotations=value.annotations
        )
