"""On-disk dataset shards and loaders."""
