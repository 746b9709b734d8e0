from __future__ import annotations

from pymongo import ASCENDING, IndexModel

from app.core.documents import BaseDocument


class Dataset(BaseDocument):
    """A named set of inputs. Membership lives on the input (``Input.dataset_ids``)."""

    app_id: str
    name: str
    description: str = ""
    inputs_count: int = 0  # maintained with $inc next to every membership change

    class Settings:
        name = "datasets"
        indexes = [IndexModel([("app_id", ASCENDING)])]
