"""One function per hot operation; each picks the Triton kernel, an optional library or the torch reference."""
from heartfast.ops.attention import attention

__all__ = ["attention"]
