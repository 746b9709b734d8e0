"""A deletion of an app that stops midway (its process dies, the database goes away) leaves the
app with its owner, who deletes it again: the memberships go last."""

from __future__ import annotations

import asyncio

from app.access import Principal
from app.apps.models import App, Membership
from app.apps.service import delete_app
from app.documents import DOCUMENT_MODELS
from app.inputs.models import Input
from app.users.models import User
from tests.factories import Api, world
from tests.tasks_engine.helpers import add_inputs, create_dataset

DELETE_APP = "mutation($id: ID!) { deleteApp(id: $id) { __typename ... on Error { code } } }"


async def test_a_deletion_stopped_after_the_inputs_went_is_finished_by_deleting_again(api: Api) -> None:
    w = await world(api)
    ds = await create_dataset(api, w.owner, w.app_id)
    await add_inputs(api, w.owner, w.app_id, [{"text": f"stopped {k}", "datasetIds": [ds]} for k in range(5)])
    owner = await User.get(w.owner.user_id)
    assert owner is not None

    # when the deletion stops (cancelled, as a dying process would) once the inputs are gone
    deleting = asyncio.create_task(delete_app(Principal(user=owner, key_id="test"), w.app_id))
    while await Input.find_one({"app_id": w.app_id}) is not None:
        assert not deleting.done(), "the deletion ended before the poll saw the inputs go"
        await asyncio.sleep(0)
    deleting.cancel()
    await asyncio.gather(deleting, return_exceptions=True)

    # then the app is still there, with its owner
    assert await App.get(w.app_id) is not None
    assert await Membership.find_one({"app_id": w.app_id, "user_id": w.owner.user_id}) is not None
    # and deleting it again finishes the work
    again = (await api.gql(w.owner, DELETE_APP, id=w.app_id))["deleteApp"]
    assert again["__typename"] == "DeleteSuccess", again
    assert await App.get(w.app_id) is None
    for model in DOCUMENT_MODELS:
        if "app_id" in model.model_fields:
            left = await model.get_pymongo_collection().find_one({"app_id": w.app_id})
            assert left is None, (model.__name__, left)
