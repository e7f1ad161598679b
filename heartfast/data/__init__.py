"""On-disk dataset shards and loaders (`heartfast.data.prepare.prepare` writes them)."""
from heartfast.data.shards import ShardDataset

__all__ = ["ShardDataset"]
