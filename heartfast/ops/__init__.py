"""One function per hot operation; each picks the Triton kernel, an optional library or the torch reference."""
from heartfast.ops.attention import attention
from heartfast.ops.paged import paged_decode, paged_prefill, reshape_and_cache
from heartfast.ops.projection import dual_projection
from heartfast.ops.vq import vq_assign, vq_ema_stats

__all__ = ["attention", "dual_projection", "paged_decode", "paged_prefill", "reshape_and_cache", "vq_assign",
           "vq_ema_stats"]
