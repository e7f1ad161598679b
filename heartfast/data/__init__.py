"""On-disk dataset shards and loaders."""
from heartfast.data.prepare import prepare
from heartfast.data.shards import ShardDataset

__all__ = ["ShardDataset", "prepare"]
