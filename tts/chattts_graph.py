"""ChatTTS' code-token decode as one CUDA graph replay per token: a drop-in for `GPT.generate`.

ChatTTS decodes audio codes with an eager transformers LlamaModel, a Python-driven forward per
code token (~15 ms for ~21 ms of audio, holding the GIL beside the engine). Here the same weights
run over a static KV cache and one decode step (code embeddings -> layers -> final norm -> code
heads -> ChatTTS' logits processors -> probabilities) is captured once as a CUDA graph. Sampling
and the EOS check stay outside the graph, as in ChatTTS, so a seeded run draws the same numbers.

Only code inference for one sentence on a GPU takes this path; text refinement, a batch, a CPU
(unless `eager=True`, the tests' reference mode), a prompt plus budget beyond the cache or an
unknown logits processor go to ChatTTS' own generate. Off switch: LIVECC_TTS_NO_CUDA_GRAPH=1.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from engine.runtime import CUDAGraphed, GraphPool

LOG = logging.getLogger(__name__)
CAPACITY = 2048  # cached positions: prompt + new code tokens (a sentence is a few hundred)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """transformers' apply_rotary_pos_emb, term for term."""
    return x * cos + _rotate_half(x) * sin


class StaticLlama:
    """ChatTTS' LlamaModel (`chat.gpt.gpt`) over a preallocated KV cache. It runs the model's own
    norms, projections, MLPs and rotary table; only the attention over the cache is written here."""

    def __init__(self, llama: torch.nn.Module, capacity: int) -> None:
        self.llama = llama
        attn, cfg = llama.layers[0].self_attn, llama.config
        self.n_heads, self.n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
        self.head_dim, self.scaling = attn.head_dim, attn.scaling
        weight = llama.norm.weight
        self.dtype, self.device, self.capacity = weight.dtype, weight.device, capacity
        shape = (len(llama.layers), self.n_kv, capacity, self.head_dim)
        self.k = torch.zeros(shape, dtype=self.dtype, device=self.device)  # zeros: masked slots stay finite
        self.v = torch.zeros_like(self.k)
        self.slots = torch.arange(capacity, device=self.device)
        cos, sin = llama.rotary_emb(weight, self.slots[None])  # the model's own table, every position
        self.cos, self.sin = cos[0], sin[0]

    def _layer(self, i: int, x: torch.Tensor, cos, sin, write, attend) -> torch.Tensor:
        layer = self.llama.layers[i]
        attn = layer.self_attn
        b, n, _ = x.shape
        h = layer.input_layernorm(x)
        q, k, v = (proj(h).view(b, n, -1, self.head_dim).transpose(1, 2)
                   for proj in (attn.q_proj, attn.k_proj, attn.v_proj))
        q, k = _rope(q, cos, sin), _rope(k, cos, sin)
        write(i, k[0], v[0])
        out = attend(i, q).transpose(1, 2).reshape(b, n, -1)
        x = x + attn.o_proj(out)
        return x + layer.mlp(layer.post_attention_layernorm(x))

    def _attend(self, q, k, v, **mask) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v, scale=self.scaling, enable_gqa=self.n_kv != self.n_heads,
                                              **mask)

    def prefill(self, emb: torch.Tensor) -> torch.Tensor:
        """The prompt's embeddings (1, n, hidden) into cache slots 0..n-1; the last position's
        final-normed hidden state (1, hidden)."""
        n = emb.shape[1]
        cos, sin = self.cos[None, None, :n], self.sin[None, None, :n]

        def write(i, k, v):
            self.k[i, :, :n], self.v[i, :, :n] = k, v

        def attend(i, q):
            return self._attend(q, self.k[None, i, :, :n], self.v[None, i, :, :n], is_causal=True)

        x = emb.to(self.dtype)
        for i in range(len(self.llama.layers)):
            x = self._layer(i, x, cos, sin, write, attend)
        return self.llama.norm(x)[:, -1]

    def decode(self, emb: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        """One token's embedding (1, 1, hidden) at `position` (a (1,) device tensor): no host
        sync, so the same code is what the graph captures. Its final-normed hidden (1, hidden)."""
        cos = self.cos.index_select(0, position)[None, None]
        sin = self.sin.index_select(0, position)[None, None]
        seen = (self.slots <= position)[None, None, None]  # this token and every one before it

        def write(i, k, v):
            self.k[i].index_copy_(1, position, k)
            self.v[i].index_copy_(1, position, v)

        def attend(i, q):
            return self._attend(q, self.k[None, i], self.v[None, i], attn_mask=seen)

        x = emb.to(self.dtype)
        for i in range(len(self.llama.layers)):
            x = self._layer(i, x, cos, sin, write, attend)
        return self.llama.norm(x)[:, -1]


@dataclass(frozen=True)
class Sampling:
    """ChatTTS' logits processors in order, as static-shape steps: the repetition penalty as
    (penalty, window), the transformers warpers (TopP, TopK) called as they are (no host sync)."""

    steps: tuple  # ("penalty", penalty, window) | ("warp", warper)
    eos: int  # its column is masked while EOS is held back
    key: tuple  # equal keys process logits identically: one graph serves them

    @property
    def window(self) -> int:
        return max((s[2] for s in self.steps if s[0] == "penalty"), default=1)

    @classmethod
    def of(cls, processors, num_vq: int, eos: int) -> Sampling | None:
        """None when a processor is not one this module reproduces."""
        from ChatTTS.model.processors import CustomRepetitionPenaltyLogitsProcessorRepeat as Penalty
        from transformers.generation import TopKLogitsWarper, TopPLogitsWarper

        steps, key = [], []
        for p in processors:
            if type(p) is Penalty and num_vq <= p.max_input_ids:
                steps.append(("penalty", p.penalty, p.past_window))
                key.append(steps[-1])
            elif type(p) in (TopPLogitsWarper, TopKLogitsWarper):
                try:
                    key.append((type(p).__name__, hash(tuple(sorted(vars(p).items())))))
                except TypeError:  # an attribute this module does not know: not reproducible here
                    return None
                steps.append(("warp", p))
            else:
                return None
        if sum(s[0] == "penalty" for s in steps) > 1:
            return None
        return cls(tuple(steps), eos, (*key, eos))


@dataclass
class _Request:
    emb: torch.Tensor
    prompt_len: int
    temperature: torch.Tensor
    max_new: int
    min_new: int
    stream: bool
    stream_batch: int
    ensure_non_empty: bool
    seed: int | None
    context: object
    return_hidden: bool
    sampling: Sampling


class ChatTTSCodeGenerator:
    """`GPT.generate` for code tokens: static cache, graphed decode step (eager when `eager`).
    Install it with `install_code_generator(chat)`; `uninstall()` restores ChatTTS' own."""

    def __init__(self, gpt, capacity: int = CAPACITY, eager: bool = False) -> None:
        self.gpt = gpt
        self.capacity = capacity
        self.eager = eager  # no graph: the reference mode, and the only one on a CPU
        self.num_vq, self.vocab = gpt.num_vq, gpt.num_audio_tokens
        self._signature = inspect.signature(type(gpt).generate)
        with torch.inference_mode():  # the weight-normed heads, materialised once: (num_vq * vocab, hidden)
            self._heads = torch.cat([call.__self__.weight.float() for call in gpt.head_code])  # bound __call__s
        self._llama: StaticLlama | None = None
        self._graphs: dict[tuple, CUDAGraphed] = {}  # by sampling key: each returns the next probabilities
        self._pool = GraphPool()  # the graphs never run at once: one memory pool
        self.capture_error: str | None = None  # set when a capture failed: ChatTTS' generate from then on
        self.runs = self.handed_over = 0  # generations run here / given to ChatTTS' generate
        self._busy = False  # a generation is using the static cache

    # -- dispatch ----------------------------------------------------------------------------
    def generate(self, *args, **kwargs):
        """GPT.generate's signature and generator semantics."""
        request = self._request(*args, **kwargs)
        # busy: an interleaved call must not capture (its warm-up writes the shared state)
        if request is None or self._busy or not self._ready(request.sampling):
            return self._hand_over(args, kwargs)
        return self._generate(request, args, kwargs)

    def _hand_over(self, args, kwargs):
        self.handed_over += 1
        return type(self.gpt).generate(self.gpt, *args, **kwargs)  # looked up now: patchable

    @property
    def graphs(self) -> int:
        """CUDA graphs captured (one per sampling rule in use)."""
        return len(self._graphs)

    def uninstall(self) -> None:
        if self.gpt.__dict__.get("generate") == self.generate:
            del self.gpt.generate

    def _request(self, *args, **kwargs) -> _Request | None:
        call = self._signature.bind(self.gpt, *args, **kwargs)
        call.apply_defaults()
        a = call.arguments
        reason = self._why_not(a)
        sampling = None if reason else Sampling.of(a["logits_processors"], self.num_vq, int(a["eos_token"]))
        if sampling is None:
            LOG.debug("ChatTTS' own generate: %s", reason or "a logits processor not reproduced here")
            return None
        return _Request(emb=a["emb"], prompt_len=a["inputs_ids"].shape[1], temperature=a["temperature"],
                        max_new=a["max_new_token"], min_new=a["min_new_token"], stream=a["stream"],
                        stream_batch=a["stream_batch"], ensure_non_empty=a["ensure_non_empty"],
                        seed=a["manual_seed"], context=a["context"], return_hidden=a["return_hidden"],
                        sampling=sampling)

    def _why_not(self, a: dict) -> str | None:
        """Why a call goes to ChatTTS' own generate, or None when this one can run it."""
        ids, mask, gpt = a["inputs_ids"], a["attention_mask"], self.gpt
        checks = (
            (a["infer_text"] or a["return_attn"], "text refinement or attentions asked for"),
            (ids.shape[0] != 1 or a["emb"].shape[0] != 1, "a batch"),
            (gpt.is_vllm or gpt.is_te_llama or not hasattr(gpt, "gpt"), "not a transformers LlamaModel"),
            (ids.device.type != "cuda" and not self.eager, "not on a CUDA device"),
            (self.capture_error is not None, "the graph capture failed earlier"),
            (ids.shape[1] + a["max_new_token"] > self.capacity, "prompt + max_new_token beyond the cache"),
            (a["temperature"].numel() != self.num_vq, "a temperature per sequence"),
        )
        reason = next((why for failed, why in checks if failed), None)
        if reason is None and mask is not None and not bool(mask.all()):
            reason = "a padded prompt"
        return reason

    # -- static state ------------------------------------------------------------------------
    @torch.inference_mode()
    def _ready(self, sampling: Sampling) -> bool:
        """Buffers allocated, and (graph mode) this sampling's graph captured; False if a capture failed."""
        if self._llama is None:
            self._allocate()
        if sampling.window not in self._windows:  # a buffer per window length: graphs keep theirs
            self._windows[sampling.window] = torch.full((self.num_vq, sampling.window), self.vocab,
                                                        dtype=torch.long, device=self._llama.device)
        if self.eager or (key := sampling.key) in self._graphs:
            return True
        try:
            self._graphs[key] = self._capture(sampling)
        except RuntimeError as error:  # a processor that syncs, a driver refusing the capture
            LOG.warning("ChatTTS code graph capture failed (%s): ChatTTS' own decode from now on", error)
            self.capture_error = f"{type(error).__name__}: {error}"
            return False
        return True

    def _allocate(self) -> None:
        self._llama = llama = StaticLlama(self.gpt.gpt, self.capacity)
        device = llama.device
        self._codes = torch.zeros(self.num_vq, dtype=torch.long, device=device)  # the last sampled token
        # position, penalty window slot, hidden row, EOS held back (1/0): one host-to-device copy a step
        self._state = torch.zeros(4, dtype=torch.long, device=device)
        self._state_host = torch.zeros(4, dtype=torch.long, pin_memory=device.type == "cuda")
        self._windows: dict[int, torch.Tensor] = {}  # the penalty's recent tokens; `vocab` where none yet
        self._temperature = torch.ones(self.num_vq, 1, dtype=torch.float, device=device)
        self._ids = torch.zeros(self.capacity, self.num_vq, dtype=torch.long, device=device)
        self._hiddens = torch.zeros(self.capacity, self._heads.shape[1], dtype=torch.float, device=device)

    def _capture(self, sampling: Sampling) -> CUDAGraphed:
        """One graph of `_step` per sampling rule, on the caller's stream (the synth's low-priority
        side stream) unless that is the default one. Warm-ups write only the last cache slot and
        hidden row, which a generation overwrites before it reads them."""
        device = self._llama.device
        self._state.copy_(torch.tensor([self.capacity - 1, 0, self.capacity - 1, 0]))
        current = torch.cuda.current_stream(device)
        stream = current if current != torch.cuda.default_stream(device) else torch.cuda.Stream(device)
        return CUDAGraphed(lambda: self._step(sampling), pool=self._pool.handle(), static=True, stream=stream,
                           off_switch="LIVECC_TTS_NO_CUDA_GRAPH", enabled=True)

    # -- the step ----------------------------------------------------------------------------
    def head_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """The code heads' logits (num_vq, vocab) for one float32 hidden state (1, hidden)."""
        return F.linear(hidden, self._heads).view(self.num_vq, self.vocab)

    def _probs(self, hidden: torch.Tensor, sampling: Sampling, hold_eos: torch.Tensor) -> torch.Tensor:
        """Next-token probabilities per codebook (num_vq, vocab), as ChatTTS' generate computes them."""
        logits = self.head_logits(hidden) / self._temperature
        window = self._windows[sampling.window]
        for step in sampling.steps:
            if step[0] == "penalty":
                logits = self._penalize(logits, step[1], window)
            else:
                logits = step[1](window, logits)  # the warpers ignore the ids
        logits.select(1, sampling.eos).masked_fill_(hold_eos, float("-inf"))
        return F.softmax(logits, dim=-1)

    def _penalize(self, logits: torch.Tensor, penalty: float, window: torch.Tensor) -> torch.Tensor:
        """ChatTTS' repetition penalty over its window of recent tokens, with static shapes: the
        window holds `vocab` (a count column dropped afterwards) where no token was generated yet."""
        counts = torch.zeros(self.num_vq, self.vocab + 1, dtype=torch.long, device=logits.device)
        counts.scatter_add_(1, window, torch.ones_like(window))
        alpha = torch.pow(penalty, counts[:, :self.vocab])
        return torch.where(logits < 0, logits.multiply(alpha), logits.divide(alpha))

    def _step(self, sampling: Sampling) -> torch.Tensor:
        """Feed the last sampled token (`_codes`) and return the next probabilities: device tensors
        only (`_state` says where), so this is what the graph captures."""
        position, slot, row, hold = (self._state[i:i + 1] for i in range(4))
        emb = torch.stack([self.gpt.emb_code[q](self._codes[q].view(1, 1)) for q in range(self.num_vq)], 3).sum(3)
        self._windows[sampling.window].index_copy_(1, slot, self._codes[:, None])
        hidden = self._llama.decode(emb, position).float()
        self._hiddens.index_copy_(0, row, hidden)
        return self._probs(hidden, sampling, hold[0] > 0)

    # -- the loop ----------------------------------------------------------------------------
    def _generate(self, r: _Request, args, kwargs) -> Iterator:
        """One generation at a time owns the static cache; an interleaved one runs ChatTTS' generate."""
        if self._busy:
            yield from self._hand_over(args, kwargs)
            return
        self._busy, self.runs = True, self.runs + 1
        try:
            yield from self._decode(r)
        finally:  # also when the caller drops the stream (a barge-in): the generator is closed
            self._busy = False

    @torch.inference_mode()
    def _decode(self, r: _Request) -> Iterator:
        """ChatTTS' generate loop for one sequence: the same pieces at the same steps."""
        window = self._windows[r.sampling.window]
        window.fill_(self.vocab)
        self._temperature.copy_(r.temperature.view(-1, 1))
        hidden = self._llama.prefill(r.emb).float()
        self._hiddens[0].copy_(hidden[0])
        # ensure_non_empty: ChatTTS redraws a first step that ended; masking EOS there is the same draw
        hold = torch.tensor(r.min_new > 0 or r.ensure_non_empty, device=hidden.device)
        probs = self._probs(hidden, r.sampling, hold)
        step = self._graphs[r.sampling.key] if not self.eager else lambda: self._step(r.sampling)
        generator = None if r.seed is None else self.gpt.generator
        produced = 0  # tokens before the first EOS: ChatTTS' end_idx and stream_iter for one sequence
        for i in range(r.max_new):
            if i > 0:
                self._set_state(r.prompt_len + i - 1, (i - 1) % window.shape[1], i, i < r.min_new)
                probs = step()
            if generator is not None:
                generator.manual_seed(r.seed)  # ChatTTS reseeds before every draw
            codes = torch.multinomial(probs, num_samples=1, generator=generator).view(-1)
            self._ids[i].copy_(codes)
            self._codes.copy_(codes)
            finished = bool(codes.eq(r.sampling.eos).any())  # the step's one host sync
            if finished and i == 0:
                return  # ChatTTS yields nothing when the first step ends (not ensure_non_empty)
            produced += not finished
            if r.stream and produced > 0 and produced % r.stream_batch == 0:
                yield self._output(produced, r.return_hidden)  # again at an EOS right after a piece, as ChatTTS
            if finished or r.context.get():
                break
        if r.context.get():
            LOG.info("ChatTTS code generation interrupted after %d tokens", produced)
        yield self._output(produced, r.return_hidden)

    def _set_state(self, position: int, slot: int, row: int, hold_eos: bool) -> None:
        host = self._state_host
        host[0], host[1], host[2], host[3] = position, slot, row, int(hold_eos)
        self._state.copy_(host, non_blocking=True)  # the previous step's sync finished the last copy

    def _output(self, n: int, return_hidden: bool):
        hiddens = [self._hiddens[:n].clone()] if return_hidden else []
        return type(self.gpt).GenerationOutputs(ids=[self._ids[:n].clone()], attentions=[], hiddens=hiddens)


def install_code_generator(chat, capacity: int = CAPACITY, eager: bool = False) -> ChatTTSCodeGenerator:
    """Route `chat.gpt.generate` through a ChatTTSCodeGenerator (it falls through where it must)."""
    generator = ChatTTSCodeGenerator(chat.gpt, capacity=capacity, eager=eager)
    chat.gpt.generate = generator.generate
    return generator
