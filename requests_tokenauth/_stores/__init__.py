"""Token stores: where tokens live beyond one manager (memory, file, Redis)."""

from ._base import KEY_PREFIX, MemoryStore, TokenStore, store_key
from ._file import FileStore
from ._redis import RedisStore

__all__ = ["KEY_PREFIX", "FileStore", "MemoryStore", "RedisStore", "TokenStore", "store_key"]
