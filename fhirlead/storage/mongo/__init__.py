"""The MongoDB backend: the scale-out store (`mongodb://…`, replica set for transactions)."""

from fhirlead.storage.mongo.store import MongoStore

__all__ = ["MongoStore"]
