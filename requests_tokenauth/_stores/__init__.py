"""Token stores: where tokens live beyond one manager (memory, file, Redis)."""

from ._base import KEY_PREFIX, MemoryStore, TokenStore, store_key

__all__ = ["KEY_PREFIX", "MemoryStore", "TokenStore", "store_key"]
