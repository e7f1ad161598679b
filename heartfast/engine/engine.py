"""`Engine(model).generate(requests)`: batch inference over many ECG questions.

Requests are pulled from any iterable (a list, or a stream that builds each one on demand) and prepared
in groups as room frees up: their ECG signals and images go through the encoders as whole batches
(features cached by content, so the many questions Heartcare-Bench asks per ECG encode it once; the cache
keeps the `feature_cache_size` most recently used, 8 groups' worth by default), the
fused DSPA projection writes all of a group's prompt embeddings in one call, and the prompts enter the
continuous-batching scheduler. Placeholder positions get cache keys derived from the ECG's identity,
so requests that share an ECG and prompt prefix share its KV blocks. Each finished request is handed to
`on_result` at once (answers written as they come: an interrupted run loses only those in flight).

Each step is launched, then landed: its tokens are read (the one device sync of a step), appended, and
finished requests retired. Greedy steps pick their tokens on the device (with the repetition penalty too: the
papers' evaluation setting, applied by `SeenTokens` on the device), so in steady decoding the next step
is launched from them before the host reads them (`lookahead`, on by default on CUDA): the host's
bookkeeping for step t runs while the GPU computes step t+1.
"""
from __future__ import annotations

import hashlib
import itertools
import time
from collections.abc import Callable, Iterable
from collections.abc import Sequence as Seq
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from heartfast.engine.blocks import BlockManager
from heartfast.engine.cuda_graphs import DecodeGraphs
from heartfast.engine.lru import LRUCache
from heartfast.engine.runner import KVCache, PagedKV, build_step
from heartfast.engine.sampling import Marks, Sampler, SamplingParams, on_device
from heartfast.engine.scheduler import Chunk, Scheduler, Sequence
from heartfast.model.heartcare import HeartcareGPT, MultimodalBatch, build_input_ids
from heartfast.model.llm import DecoderLM


@dataclass
class Request:
    """One question. `prompt` is text with `<signal>` / `<image>` markers (one per ECG / image), or token ids."""

    id: str
    prompt: str | list[int]
    signals: list = field(default_factory=list)     # each [leads, T] (numpy or tensor) at signal_fs
    signal_fs: float = 500.0
    images: list = field(default_factory=list)      # each [3, H, W] or lead crops [12, 3, h, w], in [0, 1]
    keys: list[str] | None = None                   # ECG identity per signal then image (default: content hash);
                                                    # a record shown as signal and image may use one key
    params: SamplingParams = field(default_factory=SamplingParams)


@dataclass
class Result:
    id: str
    text: str
    token_ids: list[int]
    finish_reason: str          # stop | length
    prompt_tokens: int


@dataclass
class _Launched:
    """A model step on its way: its chunks, the sequences it samples and their next tokens (on the device,
    greedy) or logits (for the host sampler)."""

    chunks: list[Chunk]
    seqs: list[Sequence]
    tokens: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    marks: Marks | None = None          # where the host-sampled tokens go in the repetition-penalty state


@dataclass
class _Run:
    """What one `generate` call carries between steps."""

    scheduler: Scheduler
    prompt_embeds: dict[int, torch.Tensor]
    results: dict[str, "Result"]
    bar: tqdm
    on_result: Callable[["Result"], None] | None = None
    collect: bool = True          # keep every Result for the returned list


@dataclass
class EngineStats:
    requests: int = 0
    ecgs: int = 0               # distinct ECGs (signals / images by key) over all calls
    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0
    output_tokens: int = 0
    steps: int = 0
    lookahead_steps: int = 0    # steps launched before the previous step's tokens were read
    preemptions: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        s = max(self.seconds, 1e-9)
        return (f"{self.requests} requests, {self.ecgs} ECGs in {self.seconds:.2f} s: {self.ecgs / s:.2f} ECGs/s, "
                f"{self.output_tokens / s:.1f} output tokens/s, {self.requests / s:.2f} requests/s; prefix cache "
                f"served {self.cached_prompt_tokens}/{self.prompt_tokens} prompt tokens; {self.preemptions} preemptions")


def content_key(array) -> str:
    data = array.detach().cpu().numpy() if torch.is_tensor(array) else np.asarray(array)
    return hashlib.sha1(np.ascontiguousarray(data).tobytes() + str(data.shape).encode()).hexdigest()


class Engine:
    def __init__(self, model: HeartcareGPT | DecoderLM, tokenizer=None, *, block_size: int = 16,
                 num_blocks: int | None = None, max_batched_tokens: int = 4096, max_seqs: int = 64,
                 prefix_cache: bool = True, gpu_memory_fraction: float = 0.5, cuda_graphs: bool = True,
                 lookahead: bool | None = None, feature_cache_size: int | None = None) -> None:
        self.model = model.eval()
        self.lm: DecoderLM = model.llm if isinstance(model, HeartcareGPT) else model
        self.lm.fuse_projections()
        self.tokenizer = tokenizer
        param = next(self.lm.parameters())
        self.device, self.dtype = param.device, param.dtype
        cfg = self.lm.config
        self.max_model_len = min(cfg.max_position_embeddings, cfg.sliding_window or cfg.max_position_embeddings)
        if num_blocks is None:
            num_blocks = self._default_blocks(block_size, max_seqs, gpu_memory_fraction)
        self.blocks = BlockManager(num_blocks, block_size, enable_prefix_cache=prefix_cache)
        self.cache = KVCache(self.lm, num_blocks, block_size, self.dtype, self.device)
        self.max_batched_tokens, self.max_seqs = max_batched_tokens, max_seqs
        self.graphs = (DecodeGraphs(self.lm, self.cache, max_seqs, self.max_model_len)
                       if cuda_graphs and self.device.type == "cuda" else None)
        # launch decode step t+1 before reading step t's tokens; on by default where it overlaps (CUDA)
        self.lookahead = self.device.type == "cuda" if lookahead is None else lookahead
        self.sampler = Sampler()
        self.stop_ids = set()
        if tokenizer is not None and tokenizer.eos_token_id is not None:
            self.stop_ids.add(int(tokenizer.eos_token_id))
        # encoder features by (kind, content key), reused by later questions on the same ECG; bounded, so a
        # run over many ECGs holds those of the last few groups only
        self._features: LRUCache[tuple[str, str], torch.Tensor] = LRUCache(
            8 * max_seqs if feature_cache_size is None else feature_cache_size)
        self._ecgs_seen: set[str] = set()
        self.stats = EngineStats()

    def _default_blocks(self, block_size: int, max_seqs: int, fraction: float) -> int:
        per_block = KVCache.bytes_per_block(self.lm, block_size, self.dtype)
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            return max(1, int(free * fraction) // per_block)
        return max_seqs * -(-min(self.max_model_len, 1024) // block_size)  # CPU: 1k tokens a sequence; preemption covers more

    # ---- preparation: encoders and projection on whole groups ---------------------------------
    def _encode_new(self, kind: str, items: dict[str, object], fs: dict[str, float]) -> dict[str, torch.Tensor]:
        """Encoder features of the items (by content key): cached ones reused, the rest encoded in one batched
        call per input shape and sampling rate."""
        found: dict[str, torch.Tensor] = {}
        groups: dict[tuple, list[str]] = {}
        for key, item in items.items():
            cached = self._features.get((kind, key))
            if cached is not None:
                found[key] = cached
            else:
                shape_rate_dtype = (tuple(np.shape(item)), fs.get(key, 0.0), str(getattr(item, "dtype", "")))
                groups.setdefault(shape_rate_dtype, []).append(key)
        for (_, rate, _), keys in groups.items():
            stacked = torch.stack([torch.as_tensor(items[k]) for k in keys]).to(self.device)
            if kind == "signal":
                feats = self.model.signal_features(stacked.float(), rate)
            elif kind == "codes":
                feats = self.model.signal_codes(stacked.float(), rate)
            elif stacked.dtype == torch.uint8:   # rendered pictures: the tower scales 0-255 itself, as in training
                feats = self.model.image_features(stacked)
            else:
                feats = self.model.image_features(stacked.to(self.dtype))
            for k, f in zip(keys, feats):   # own copies: a kept row must not pin its whole batch's tensor
                found[k] = f
                self._features.put((kind, k), f.clone())
        return found

    def _prepare(self, requests: Seq[Request], first_key: int) -> list[tuple[Sequence, torch.Tensor | None]]:
        if not isinstance(self.model, HeartcareGPT):
            if any(r.signals or r.images for r in requests):
                raise ValueError("this engine serves a text-only decoder: requests cannot carry signals or images")
            text_only = []
            for i, r in enumerate(requests):
                ids = self._ids(r)
                text_only.append((self._sequence(r, first_key + i, ids, list(ids)), None))
            return text_only
        discrete = self.model.config.signal_mode == "discrete"
        signal_kind = "codes" if discrete else "signal"
        spans = self.model.spans
        request_keys, signals, images, rates = [], {}, {}, {}
        hashed: dict[int, str] = {}   # by object: a bench's questions on one ECG share its array, hashed once
        for r in requests:
            keys = r.keys or [hashed.get(id(x)) or hashed.setdefault(id(x), content_key(x))
                              for x in (*r.signals, *r.images)]
            if len(keys) != len(r.signals) + len(r.images):
                raise ValueError(f"request {r.id}: {len(keys)} keys for {len(r.signals)} signals + {len(r.images)} images")
            self._ecgs_seen.update(keys)
            request_keys.append((keys[:len(r.signals)], keys[len(r.signals):]))
            signals.update(zip(keys, r.signals))
            rates.update((k, r.signal_fs) for k in keys[:len(r.signals)])
            images.update(zip(keys[len(r.signals):], r.images))
        signal_feats = self._encode_new(signal_kind, signals, rates)
        image_feats = self._encode_new("image", images, {})
        all_ids, sig_feats, img_feats, seq_keys = [], [], [], []
        for r, (s_keys, i_keys) in zip(requests, request_keys):
            sig = [signal_feats[k] for k in s_keys]
            img = [image_feats[k] for k in i_keys]
            if isinstance(r.prompt, str):
                ids = build_input_ids(self.tokenizer, r.prompt, spans,
                                      signal_tokens=[f.shape[0] for f in sig] if not discrete else 0,
                                      image_tokens=[f.shape[0] * self.model.projector.image_tokens for f in img],
                                      signal_codes=sig if discrete else None,
                                      levels=self.model.config.discrete_levels)
            else:
                ids = list(r.prompt)
            all_ids.append(ids)
            if not discrete:
                sig_feats += sig
            img_feats += img
            seq_keys.append(self._cache_keys(ids, s_keys if not discrete else [], i_keys))
        flat = torch.tensor([t for ids in all_ids for t in ids], device=self.device)[None]
        batch = MultimodalBatch(
            input_ids=flat,
            signal_features=torch.cat(sig_feats).to(self.device) if sig_feats else None,
            image_features=torch.cat(img_feats).to(self.device) if img_feats else None)
        with torch.inference_mode():
            embeds = self.model.embed(batch)[0]
        out, offset = [], 0
        for i, (r, ids) in enumerate(zip(requests, all_ids)):
            seq = self._sequence(r, first_key + i, ids, seq_keys[i])
            out.append((seq, embeds[offset:offset + len(ids)]))
            offset += len(ids)
        return out

    def _cache_keys(self, ids: list[int], signal_keys: list[str], image_keys: list[str]) -> list[int]:
        """Token ids, except that placeholder positions are named by their ECG / image and index."""
        tid = self.model.config.token_ids
        placeholders = {tid["<signal>"]: iter(signal_keys), tid["<image>"]: iter(image_keys)}
        keys, current, run = [], None, 0
        for pos, t in enumerate(ids):
            if t in placeholders:
                if pos == 0 or ids[pos - 1] != t:
                    current, run = next(placeholders[t], f"anon{pos}"), 0
                keys.append(hash((t, current, run)))
                run += 1
            else:
                keys.append(t)
        return keys

    def _ids(self, r: Request) -> list[int]:
        if isinstance(r.prompt, str):
            if self.tokenizer is None:
                raise ValueError(f"request {r.id}: a text prompt needs the engine's tokenizer")
            return self.tokenizer(r.prompt, add_special_tokens=False)["input_ids"]
        return list(r.prompt)

    def _sequence(self, r: Request, key: int, ids: list[int], cache_keys: list[int]) -> Sequence:
        if not ids:
            raise ValueError(f"request {r.id}: empty prompt")
        if len(ids) + r.params.max_tokens > self.max_model_len:
            raise ValueError(f"request {r.id}: {len(ids)} prompt + {r.params.max_tokens} new tokens exceed the "
                             f"model's {self.max_model_len}-token window")
        return Sequence(r.id, key, ids, r.params, cache_keys)

    # ---- the loop ------------------------------------------------------------------------------
    @torch.inference_mode()
    def generate(self, requests: Iterable[Request], progress: bool = False,
                 on_result: Callable[[Result], None] | None = None, collect: bool = True) -> list[Result]:
        """Answers in the order of `requests` (a list or any iterable, read as room frees up); `on_result`
        gets each one as soon as it is finished. With `collect=False` nothing is kept for a returned list
        (it is empty): a stream of any length, consumed through `on_result`, runs in bounded memory."""
        start = time.perf_counter()
        scheduler = Scheduler(self.blocks, self.max_batched_tokens, self.max_seqs)
        hits_before = self.blocks.hits
        total = len(requests) if isinstance(requests, Seq) else None
        run = _Run(scheduler, {}, {}, tqdm(total=total, disable=not progress, desc="infer", dynamic_ncols=True),
                   on_result, collect)
        pending, order, pulled = iter(requests), [], 0
        group = max(self.max_seqs, 1)
        exhausted = False
        inflight: _Launched | None = None
        try:
            while not exhausted or scheduler.has_work:
                if not exhausted and len(scheduler.waiting) < group:
                    chunk = list(itertools.islice(pending, group))
                    exhausted = len(chunk) < group or pulled + len(chunk) == total
                    for seq, emb in self._prepare(chunk, pulled) if chunk else []:
                        scheduler.add(seq)
                        if emb is not None:
                            run.prompt_embeds[seq.key] = emb
                    pulled += len(chunk)
                    if collect:
                        order += [r.id for r in chunk]
                    continue
                if inflight is not None:
                    ahead = self._look_ahead(inflight, scheduler)
                    self._land(inflight, run)
                    inflight = ahead
                    if ahead is not None:
                        self._complete(ahead, scheduler)
                    continue
                chunks = scheduler.schedule()
                if not chunks:
                    raise RuntimeError("the scheduler could not place any request: the KV cache is too small")
                inflight = self._launch(chunks, run.prompt_embeds)
                self._complete(inflight, scheduler)
        finally:   # on an error mid-run (a bad request, a failing on_result), hand the KV blocks back
            for seq in scheduler.abort():
                self.sampler.release(seq.key)
            run.bar.close()
        self.stats.ecgs = len(self._ecgs_seen)
        self.stats.cached_prompt_tokens += self.blocks.hits - hits_before
        self.stats.preemptions += scheduler.preemptions
        self.stats.seconds += time.perf_counter() - start
        return [run.results[i] for i in order]

    def _launch(self, chunks: list[Chunk], prompt_embeds: dict[int, torch.Tensor],
                ids: torch.Tensor | None = None) -> "_Launched":
        """Run one model step; greedy requests get their next tokens on the device, others keep logits."""
        logits = self._forward(chunks, prompt_embeds, ids)
        rows = [i for i, c in enumerate(chunks) if c.samples]
        seqs = [chunks[i].seq for i in rows]
        if len(rows) != len(chunks):
            logits = logits[rows]
        self.stats.steps += 1
        logits, marks = self.sampler.seen.penalize(logits, [s.key for s in seqs], [s.token_ids for s in seqs],
                                                   [s.params.repetition_penalty for s in seqs])
        if seqs and all(s.params.temperature == 0 for s in seqs):
            tokens = logits.argmax(dim=-1)
            if marks is not None:
                self.sampler.seen.mark(marks, tokens)
            return _Launched(chunks, seqs, tokens=tokens)
        return _Launched(chunks, seqs, logits=logits, marks=marks)

    def _look_ahead(self, step: "_Launched", scheduler: Scheduler) -> "_Launched | None":
        """Launch the next decode step before reading `step`'s tokens, its inputs taken from the device.

        Only in the steady state: every running sequence was sampled by `step` on the device, no waiting
        request could be admitted (none waits, or every slot is taken: a streamed bench keeps requests
        waiting all run long), and the cache has a block for each sequence that goes on (so nothing is
        preempted mid-flight). A sequence that turns out to stop at `step`'s token wastes one token of work
        and frees its slot a step later; one that reaches max_tokens is left out. The host's bookkeeping (and
        preparing the next requests) then overlaps the GPU's next step.
        """
        if not self.lookahead or step.tokens is None or len(scheduler.running) != len(step.seqs) or \
                (scheduler.waiting and len(scheduler.running) < self.max_seqs):
            return None
        going = [s for s in step.seqs if len(s.output_ids) + 1 < s.params.max_tokens]
        if not going or self.blocks.num_available < len(going):
            return None
        for seq in going:
            seq.append_pending()
        chunks = scheduler.schedule()
        self.stats.lookahead_steps += 1
        index = {seq: i for i, seq in enumerate(step.seqs)}
        order = [index[c.seq] for c in chunks]
        ids = step.tokens if order == list(range(len(step.seqs))) else \
            step.tokens[torch.tensor(order, device=self.device)]
        return self._launch(chunks, {}, ids)

    def _complete(self, step: "_Launched", scheduler: Scheduler) -> None:
        """Mark a step's K/V written (once every token it read is known, so prefix hashes are right)."""
        for c in step.chunks:
            if not c.seq.finished:
                scheduler.complete(c)

    def _land(self, step: "_Launched", run: "_Run") -> None:
        """Read a step's tokens (the one device sync per step), append them, retire finished requests."""
        seqs = step.seqs
        if step.tokens is not None:
            tokens = step.tokens.tolist()
        elif seqs:
            tokens = self.sampler(step.logits, [s.params for s in seqs], [s.key for s in seqs])
            if step.marks is not None:
                self.sampler.seen.mark(step.marks, on_device(tokens, torch.long, step.logits.device))
        else:
            return
        for seq, token in zip(seqs, tokens):
            if seq.finished:        # stopped at the step before; this token was looked ahead for nothing
                continue
            if seq.pending:
                seq.resolve(token)
            else:
                seq.append(token)
            reason = self._finished(seq)
            if reason:
                run.scheduler.finish(seq, reason)
                self.sampler.release(seq.key)
                run.prompt_embeds.pop(seq.key, None)
                result = self._result(seq)
                self.stats.requests += 1
                self.stats.prompt_tokens += result.prompt_tokens
                self.stats.output_tokens += len(result.token_ids)
                if run.collect:
                    run.results[seq.request_id] = result
                run.bar.update(1)
                if run.on_result is not None:
                    run.on_result(result)

    def _forward(self, chunks: list[Chunk], prompt_embeds: dict[int, torch.Tensor],
                 ids: torch.Tensor | None = None) -> torch.Tensor:
        """Logits [n_chunks, vocab] at each chunk's last token (`ids`: the step's tokens, already on the device)."""
        step = build_step(chunks, self.blocks.block_size, self.device)
        self.cache.zero_through(self.blocks.high_water)
        if ids is None:
            ids = torch.tensor([t for c in chunks for t in c.seq.token_ids[c.start:c.start + c.length]],
                               device=self.device)
        from_prompt = any(c.seq.key in prompt_embeds and c.start < prompt_embeds[c.seq.key].shape[0] for c in chunks)
        if step.decode_only and not from_prompt and self.graphs is not None and \
                self.graphs.fits(len(chunks), step.max_seq_len):
            return self.graphs.replay(ids, step)
        embeds = self.lm.embed_tokens(ids)
        row = 0
        for c in chunks:
            emb = prompt_embeds.get(c.seq.key)
            if emb is not None and c.start < emb.shape[0]:
                stop = min(c.start + c.length, emb.shape[0])
                embeds[row:row + stop - c.start] = emb[c.start:stop]
            row += c.length
        hidden = self.lm.decode(inputs_embeds=embeds[None], positions=step.positions,
                                kv=PagedKV(self.cache, step))
        return self.lm.lm_head(hidden[0, step.last_rows]).float()

    def _finished(self, seq: Sequence) -> str:
        token, p = seq.output_ids[-1], seq.params
        if token in self.stop_ids or token in p.stop_token_ids:
            return "stop"
        if p.stop and self.tokenizer is not None and any(s in self._text(seq) for s in p.stop):
            return "stop"
        return "length" if len(seq.output_ids) >= p.max_tokens else ""

    def _text(self, seq: Sequence) -> str:
        ids = [t for t in seq.output_ids if t not in self.stop_ids and t not in seq.params.stop_token_ids]
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def _result(self, seq: Sequence) -> Result:
        text = self._text(seq) if self.tokenizer is not None else ""
        for s in seq.params.stop:
            if s in text:
                text = text[:text.index(s)]
        return Result(seq.request_id, text, list(seq.output_ids), seq.finish_reason, len(seq.prompt_ids))
