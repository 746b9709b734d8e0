"""Datasets: named sets of inputs of one app.

Membership lives on the input (``Input.dataset_ids``) and is copied onto its annotations
(``Annotation.dataset_ids``), so both are changed together with ``$addToSet`` / ``$pull`` of the
dataset id. ``Dataset.inputs_count`` is a maintained counter (MONGODB.md, contract 5): every
membership change ``$inc``s it by exactly the number of input documents the write modified, as
reported by MongoDB, so concurrent or repeated calls never count an input twice.
"""

from __future__ import annotations

from collections.abc import Mapping

from pymongo import UpdateOne

from app.access import CONTRIBUTORS, MANAGERS, Principal, get_for, require_app
from app.annotations import store
from app.core import validate
from app.core.errors import Conflict, ErrorCode, NotFound
from app.core.pagination import PAGE_KEY, Page, PageArgs, paginate
from app.datasets.models import Dataset
from app.inputs.models import Input
from app.tasks.models import LabelingTask


def member_of(dataset_id: str) -> dict[str, object]:
    """Filter for documents whose ``dataset_ids`` holds ``dataset_id``.

    ``$in`` of one value rather than plain equality: the same on MongoDB, but nx-27017 answers
    plain equality on an indexed array field with no documents at all.
    """
    return {"dataset_ids": {"$in": [dataset_id]}}


async def create_dataset(
    principal: Principal, app_id: str, name: str, description: str = "", all_inputs: bool = False
) -> Dataset:
    """A new dataset; with ``all_inputs`` it holds every input the app has at this moment."""
    await require_app(principal, app_id, MANAGERS)
    dataset = Dataset(app_id=app_id, name=validate.name(name), description=validate.description(description))
    await dataset.insert()
    if all_inputs:
        # $inc (not $set) of the modified count: an input added concurrently with this
        # dataset id was already counted by its own write and is not modified here.
        await _change_membership(dataset, {"app_id": app_id}, "$addToSet", sign=1)
    return await _reload(dataset.id)


async def update_dataset(
    principal: Principal, dataset_id: str, name: str | None, description: str | None
) -> Dataset:
    """Rename or re-describe; only the given fields change.

    A ``$set`` rather than a whole-document save, so a concurrent ``$inc`` of ``inputs_count``
    is never overwritten by a stale copy.
    """
    dataset = await get_for(principal, Dataset, dataset_id, what="dataset", roles=MANAGERS)
    changes: dict[str, str] = {}
    if name is not None:
        changes["name"] = validate.name(name)
    if description is not None:
        changes["description"] = validate.description(description)
    if changes:
        await Dataset.get_pymongo_collection().update_one(
            {"_id": dataset.id}, {"$set": changes, "$currentDate": {"updated_at": True}}
        )
    return await _reload(dataset.id)


async def delete_dataset(principal: Principal, dataset_id: str) -> str:
    """Delete a dataset no labeling task uses; its inputs and annotations stay in the app."""
    dataset = await get_for(principal, Dataset, dataset_id, what="dataset", roles=MANAGERS)
    if await LabelingTask.find_one({"app_id": dataset.app_id, "dataset_id": dataset.id}):
        raise Conflict("a labeling task uses this dataset", field="id", code=ErrorCode.IN_USE)
    await dataset.delete()
    member = {"app_id": dataset.app_id, **member_of(dataset.id)}
    pull = {"$pull": {"dataset_ids": dataset.id}}
    await Input.get_pymongo_collection().update_many(member, pull)
    await store.set_dataset(dataset.app_id, None, dataset.id, member=False)
    return dataset.id


async def add_inputs(
    principal: Principal, dataset_id: str, input_ids: list[str], *, max_items: int
) -> Dataset:
    """Put inputs of the dataset's app into it; inputs already in it are left as they are."""
    dataset, ids = await _membership_args(principal, dataset_id, input_ids, max_items)
    await _change_membership(dataset, {"_id": {"$in": ids}}, "$addToSet", sign=1)
    return await _reload(dataset.id)


async def remove_inputs(
    principal: Principal, dataset_id: str, input_ids: list[str], *, max_items: int
) -> Dataset:
    """Take inputs out of the dataset; inputs not in it are left as they are."""
    dataset, ids = await _membership_args(principal, dataset_id, input_ids, max_items)
    await _change_membership(dataset, {"_id": {"$in": ids}}, "$pull", sign=-1)
    return await _reload(dataset.id)


async def get_dataset(principal: Principal, dataset_id: str) -> Dataset:
    return await get_for(principal, Dataset, dataset_id, what="dataset")


async def list_datasets(principal: Principal, app_id: str, args: PageArgs) -> Page[Dataset]:
    await require_app(principal, app_id)
    return await paginate(Dataset, {"app_id": app_id}, args)


async def list_dataset_inputs(dataset: Dataset, args: PageArgs) -> Page[Input]:
    """Inputs of a dataset the caller was already allowed to load."""
    return await paginate(Input, {"app_id": dataset.app_id, **member_of(dataset.id)}, args, key=PAGE_KEY)


async def members_among(dataset_id: str, input_ids: list[str]) -> set[str]:
    """Which of ``input_ids`` are in the dataset already (to tell what an add really adds)."""
    docs = (
        await Input.get_pymongo_collection()
        .find({"_id": {"$in": input_ids}, **member_of(dataset_id)}, {"_id": 1})
        .to_list()
    )
    return {d["_id"] for d in docs}


async def known_dataset_ids(app_id: str, dataset_ids: set[str]) -> set[str]:
    """Which of ``dataset_ids`` are datasets of ``app_id`` (one ``$in`` query)."""
    if not dataset_ids:
        return set()
    found = Dataset.get_pymongo_collection().find(
        {"_id": {"$in": sorted(dataset_ids)}, "app_id": app_id}, {"_id": 1}
    )
    return {doc["_id"] async for doc in found}


async def adjust_inputs_counts(deltas: Mapping[str, int]) -> None:
    """``$inc`` each dataset's ``inputs_count`` by its delta, in one unordered bulk write."""
    ops = [UpdateOne({"_id": ds}, {"$inc": {"inputs_count": n}}) for ds, n in deltas.items() if n]
    if ops:
        await Dataset.get_pymongo_collection().bulk_write(ops, ordered=False)


async def _membership_args(
    principal: Principal, dataset_id: str, input_ids: list[str], max_items: int
) -> tuple[Dataset, list[str]]:
    """The dataset (caller may contribute to its app) and the de-duplicated input ids, all of
    which must be inputs of the same app (else NotFound naming ``inputIds.<index>``)."""
    dataset = await get_for(
        principal, Dataset, dataset_id, what="dataset", roles=CONTRIBUTORS, field="datasetId"
    )
    validate.bounded_list(input_ids, "inputIds", max_items=max_items)
    ids = list(dict.fromkeys(input_ids))
    found = Input.get_pymongo_collection().find({"_id": {"$in": ids}, "app_id": dataset.app_id}, {"_id": 1})
    known = {doc["_id"] async for doc in found}
    for index, input_id in enumerate(input_ids):
        if input_id not in known:
            raise NotFound("input", input_id, field=f"inputIds.{index}")
    return dataset, ids


async def _change_membership(
    dataset: Dataset, inputs_filter: dict[str, object], operator: str, sign: int
) -> None:
    """Add (``$addToSet``) or remove (``$pull``) the dataset id on the matching inputs of its
    app and on their annotations, then move the counter by the inputs actually modified."""
    scoped = {**inputs_filter, "app_id": dataset.app_id}
    change = {operator: {"dataset_ids": dataset.id}}
    result = await Input.get_pymongo_collection().update_many(scoped, change)
    ids = inputs_filter.get("_id")
    input_ids = list(ids["$in"]) if isinstance(ids, dict) else None
    await store.set_dataset(dataset.app_id, input_ids, dataset.id, member=operator == "$addToSet")
    if result.modified_count:
        await Dataset.get_pymongo_collection().update_one(
            {"_id": dataset.id},
            {
                "$inc": {"inputs_count": sign * result.modified_count},
                "$currentDate": {"updated_at": True},
            },
        )


async def _reload(dataset_id: str) -> Dataset:
    dataset = await Dataset.get(dataset_id)
    if dataset is None:  # deleted concurrently
        raise NotFound("dataset", dataset_id, field="id")
    return dataset
