"""Many requests decoded together: one forward step over every request in flight.

A decode step streams every weight once whatever the number of rows (the
products are memory-bound: docs/benchmarks.md), so requests that ride on one
step cost little more than one alone. Requests join and leave at any step: each
is prefilled when it joins (together with those joining at the same step; an
engine with no rows in flight first waits half a step for requests arriving
with the first: GATHER_SHARE), then
decoded as one row among the others, with its own KV cache, position, sampling
settings, generator and loop count, and leaves at EOS, at its byte budget, or
when its caller stops listening. A trace's per-loop answers are rows too: they
carry on from its teacher-forced pass (Row.branch) instead of a prompt; so are its
alternatives' branches (trace.Alternatives: several rows reading that pass's cache
in place, one step per byte they complete, rows that split as branches part). So are
self-speculative requests (emojilm.speculative): a drafting row steps through its
draft loops only, and the rows whose drafts end at a step are checked together in
one more forward (check_drafts), the acceptance rule being speculative.judge.

Batch-invariant: a request's bytes do not depend on who else is asking, so a
shared link shows the shared answer even under load. The products give each row
bitwise the same result whatever the other rows hold and however many there are
(emojilm.kernels runs each kernel on at least the rows from which this holds, its
`min_rows`: a lone row rides with copies of itself), every row runs the
same loops (a row past its loop count attends to nothing and is ignored), and
attention and the read-out run per row. Where a model's products find no such
row count (model.rows_steady), its rows step one by one. Requests that join at
one step are prefilled in one forward (their prompts side by side, each
attending to its own), where a check on the model's products finds that a row's
bits do not depend on how many rows share the product, up to PREFILL_ROWS;
otherwise one by one. Only the row counts change with the load.

One engine serves every model a server holds (each model's rows step together)
and runs the server's other torch work (`run`: a trace's teacher-forced pass and tables) between
its steps, so that torch runs on one thread only. torch's OpenMP pool spins
between parallel regions only while the process holds no more pool threads than
cores; a second thread that computes keeps its own pool, and then every step on
either waits on sleeping threads: a lone answer at the published shape took 1.4×
as long (docs/benchmarks.md, "Concurrent visitors").
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TypeVar

import torch

from emojilm.generation import Generation, Handoff, stream_text
from emojilm.kernels import row_bits
from emojilm.kvcache import BranchCache, KVCache, row_positions
from emojilm.model import LoopedTransformer
from emojilm.request import Request
from emojilm.sampling import sample
from emojilm.speculative import (
    DRAFT_CONFIDENCE,
    DRAFT_LENGTH,
    DraftStats,
    break_even_share,
    judge,
    worth_drafting_ahead,
)
from emojilm.step import Step, leading_rows, prefill, step, step_every_row
from emojilm.tokenizer import ByteTokenizer

T = TypeVar("T")
MAX_ROWS = 8  # requests decoded together; more wait their turn
# KV cache memory the rows in flight may hold together (one row always runs): at the published shape a
# request holds 0.2 MB per position and loop (Row.cache_bytes), so 2 GiB holds 8 requests of 8 loops
# with 170 positions each (prompt and answer), or one of 16 loops over the whole 512-byte context.
MAX_CACHE_BYTES = 2 * 2**30
PREFILL_ROWS = 256  # the most prompt bytes prefilled in one forward (checked: prompts_round_alike)
# An idle engine waits this share of a decode step for requests arriving with the first, to prefill them
# in one forward: a prefill streams every weight as a step does, and Gradio's queue hands a burst of
# visitors (a shared link) over one by one, ~12 ms apart (8 within 0.11 s at the published shape).
GATHER_SHARE = 0.5
DONE = None  # what a participant's queue receives after its last id (a trace's branches: once finished)


def width(cache: KVCache | BranchCache) -> int:
    """The batch rows a participant's cache feeds: a BranchCache's branches, or a request's one row."""
    return len(cache.branch_at) if isinstance(cache, BranchCache) else 1


def first_positions(cache: KVCache | BranchCache) -> torch.Tensor:
    """Where each row of a participant's cache feeds its first token: a branch's branch position, a request's 0."""
    return cache.branch_at.cpu() if isinstance(cache, BranchCache) else torch.zeros(1, dtype=torch.long)


class RowsCache:
    """Rows that each have their own KV cache and position, stepped together.

    `parts` is each participant's (cache, where it feeds): a request's own KVCache and
    position (one row), or a trace's BranchCache and branch step (its rows, in a run).
    A row past its cache's loops attends to nothing: it gets its queries back, and its
    state is never read.
    """

    def __init__(self, parts: list[tuple[KVCache | BranchCache, int]], lengths: list[int] | None = None) -> None:
        self.parts = parts
        self.widths = [width(cache) for cache, _ in parts]  # each participant's rows
        self.lengths = lengths  # positions each row feeds (a speculative check's, padded to the longest), or all

    def positions(self, start: int, length: int) -> torch.Tensor:
        at = row_positions(torch.cat([first_positions(cache) + fed for cache, fed in self.parts]) + start, length)
        if self.lengths is None:
            return at
        last = at[:, 0] + torch.tensor(self.lengths) - 1  # padding repeats a row's last position
        return torch.minimum(at, last[:, None])

    def copy_to_later_loops(self, loop: int, start: int, end: int, row: int) -> None:
        first = 0  # the row a part starts at; adaptive rows are requests' (branches exit at their loop)
        for (cache, fed), rows in zip(self.parts, self.widths, strict=True):
            if first == row:
                return cache.copy_to_later_loops(loop, fed + start, fed + end)
            first += rows

    def decode_slots(self, start: int) -> list[list[int]] | None:
        """Each row's decode slot (KVCache.decode_slots, BranchCache.decode_slots) at its own position; None
        if a participant's cache cannot give them (then torch attends for every row)."""
        slots = []
        for cache, fed in self.parts:
            if (mine := cache.decode_slots(fed + start)) is None:
                return None
            slots += mine
        return slots

    def first_rows(self, rows: int) -> RowsCache:
        """The participants of the first `rows` rows, each whole (batch_step runs a loop on those that reach it)."""
        n = [0, *itertools.accumulate(self.widths)].index(rows)
        return RowsCache(self.parts[:n], self.lengths if self.lengths is None else self.lengths[:rows])

    def attend(self, loop: int, layer: int, start: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
        # Split once per call, not sliced per participant: a decode step runs this in every block.
        split = zip(q.split(self.widths), k.split(self.widths), v.split(self.widths), strict=True)
        out, r = [], 0
        for (cache, fed), mine in zip(self.parts, split, strict=True):
            n = q.shape[2] if self.lengths is None else self.lengths[r]
            r += mine[0].shape[0]
            if loop >= cache.n_loops:
                out.append(mine[0])
            elif n == q.shape[2]:
                out.append(cache.attend(loop, layer, fed + start, *mine))
            else:
                seen = cache.attend(loop, layer, fed + start, *(x[:, :, :n] for x in mine))
                out.append(torch.cat([seen, mine[0][:, :, n:]], dim=2))
        return torch.cat(out)


class PromptsCache:
    """Several requests' prompts fed as one sequence [1, N], side by side: their products run together,
    while each attends to its own prompt only, in its own cache, as it would alone."""

    def __init__(self, caches: list[KVCache], lengths: list[int]) -> None:
        self.caches, self.lengths = caches, lengths

    def positions(self, start: int, length: int) -> torch.Tensor:
        return torch.cat([torch.arange(n) for n in self.lengths])[None]  # each prompt from position 0

    def decode_slots(self, start: int) -> None:
        """None: prompts feed many positions each (torch attends)."""
        return None

    def attend(self, loop: int, layer: int, start: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
        out, at = [], 0
        for cache, n in zip(self.caches, self.lengths, strict=True):
            mine = slice(at, at + n)
            if loop >= cache.n_loops:  # past its loop count: its states are not read
                out.append(q[:, :, mine])
            else:
                out.append(cache.attend(loop, layer, 0, q[:, :, mine], k[:, :, mine], v[:, :, mine]))
            at += n
        return torch.cat(out, dim=2)


def rows_round_alike(model: LoopedTransformer, counts: tuple[int, ...]) -> bool:
    """Whether each product the model runs gives a row the same bits in a product of any of `counts`
    rows, in the middle of the call or last (kernels.row_bits). Unfused layers (nn.Linear) are taken
    not to."""
    products = model.products()
    if not products:
        return False
    device = model.tok_embeddings.weight.device
    for product in {(type(p), p.in_features, p.n_weights): p for p in products}.values():
        bits = row_bits(product, product.in_features, device, counts)
        if not all(torch.equal(b, bits[0]) for b in bits):
            return False
    return True


def prompts_round_alike(model: LoopedTransformer) -> bool:
    """Whether prompts may be prefilled together: a row's bits the same among 1 to PREFILL_ROWS rows."""
    return rows_round_alike(model, (1, 2, 3, 17, 33, 100, 129, PREFILL_ROWS))


@dataclass
class Feed:
    """What a participant feeds one step: its cache and where in it (a request's position, a trace's
    branch step), then per row its id, exit loop and adaptive threshold (0: off)."""

    cache: KVCache | BranchCache
    at: int
    ids: list[int]
    exits: list[int]
    thresholds: list[float]


def batch_step(model: LoopedTransformer, rows: list) -> Step:
    """Each participant's rows (a Row: one request; trace.Alternatives: a trace's branches) fed at their
    own positions, every row through every loop until it exits (its loop count, or its adaptive
    threshold: step.step_every_row). A loop runs on the participants up to the last that reaches it,
    each whole: in `by_last_loop` order, on those that reach it only. Row r's states then depend on
    its own id, cache and position only, bit for bit, where model.rows_steady (the module's docstring)."""
    feeds = [row.feed() for row in rows]
    tokens = torch.tensor([i for f in feeds for i in f.ids], device=model.tok_embeddings.weight.device)[:, None]
    exits, thresholds = [e for f in feeds for e in f.exits], [t for f in feeds for t in f.thresholds]
    ends = list(itertools.accumulate(len(f.ids) for f in feeds))  # where each participant's rows end
    rows_at = leading_rows([max(f.exits) for f in feeds], ends)
    cache = RowsCache([(f.cache, f.at) for f in feeds])
    return step_every_row(model, tokens, cache, 0, exits, thresholds, rows_at)


def by_last_loop(rows: list) -> list:
    """Participants latest exit first (stable), as batch_step runs them."""
    return sorted(rows, key=lambda row: -row.last_loop)


@dataclass
class Row:
    """One request in flight."""

    model: LoopedTransformer
    request: Request  # checked (Request.for_model), with its seed
    prompt: list[int]
    eos_id: int = -1  # the id that ends its answer (-1: none, max_new_tokens does)
    out: queue.Queue = field(default_factory=queue.Queue)  # (id, loops) per byte, then DONE
    cancelled: threading.Event = field(default_factory=threading.Event)
    cache: KVCache | None = None
    generator: torch.Generator | None = None
    position: int = 0  # where its next id goes
    hidden: torch.Tensor | None = None  # [dim]: its state after its exit loop, before its next id
    loops: int = 0  # the loops that state took
    next_id: int = 0  # its last sampled id, fed at the next step
    produced: int = 0
    # Self-speculative drafting (request.draft_loops > 0, emojilm.speculative): the round's ids (its first,
    # then each drafted one), the draft states and read-outs; the round starts at position round_at.
    drafted: list[int] = field(default_factory=list)
    draft_states: list[torch.Tensor] = field(default_factory=list)
    draft_logits: list[torch.Tensor] = field(default_factory=list)
    round_at: int = 0
    stats: DraftStats = field(default_factory=DraftStats)
    width = 1  # batch rows it feeds

    @property
    def prefilled(self) -> bool:
        """Whether it can step (else the engine prefills its prompt first)."""
        return self.hidden is not None

    @property
    def cache_bytes(self) -> int:
        """The KV cache it holds: keys and values of every (loop, layer) for its prompt and answer."""
        a, weight = self.model.args, self.model.tok_embeddings.weight
        per_position = 2 * a.n_layers * a.n_kv_heads * a.head_dim * weight.element_size()
        return self.request.n_loops * per_position * (len(self.prompt) + self.request.max_new_tokens)

    @property
    def last_loop(self) -> int:
        """The loop its step ends at: its loop count, or a drafting row's draft loops."""
        return self.request.draft_loops or self.request.n_loops

    def feed(self) -> Feed:
        return Feed(self.cache, self.position, [self.next_id], [self.last_loop], [self.request.adaptive_threshold])

    def stepped(self, out: Step, first: int) -> None:
        """Take its state from a step where it was row `first`."""
        self.loops, self.hidden = out.loops[first], out.hidden[first, -1]
        self.position += 1

    @classmethod
    def branch(cls, model: LoopedTransformer, request: Request, prompt: list[int], trunk: KVCache,
               hidden: torch.Tensor, generator: torch.Generator, eos_id: int = -1) -> Row:  # fmt: skip
        """A row that carries on a sequence already run: `prompt` sits in the trunk cache's first
        request.n_loops loops, and `hidden` is its state after them, before its next id (the trace's
        per-loop answers, emojilm.trace). It gets its own copy of that much of the trunk."""
        at, loops = len(prompt), request.n_loops
        shape = (loops, *trunk.k.shape[1:4], at + request.max_new_tokens, trunk.k.shape[5])
        k, v = trunk.k.new_empty(shape), trunk.v.new_empty(shape)  # positions from `at` on are written before read
        k[..., :at, :], v[..., :at, :] = trunk.k[:loops, ..., :at, :], trunk.v[:loops, ..., :at, :]
        cache = KVCache(k, v, trunk.window)
        return cls(model, request, list(prompt), eos_id, cache=cache, generator=generator, position=at,
                   hidden=hidden, loops=loops)  # fmt: skip


def by_model(rows: list[Row]) -> list[list[Row]]:
    """The rows of each model, in order: each model's rows step in a batch of their own."""
    groups: dict[int, list[Row]] = {}
    for row in rows:
        groups.setdefault(id(row.model), []).append(row)
    return list(groups.values())


def emit(rows: list[Row]) -> list[Row]:
    """Sample every row's next id from its own read-out and generator, into its queue (a drafting row:
    its next draft id, then, once its draft ends, the ids its check keeps); the rows not done."""
    staying, checked = [], []
    for row in rows:
        if row.cancelled.is_set():
            continue
        if not isinstance(row, Row):  # a trace's branches read their states out as they step (trace.Alternatives)
            if not row.finished:
                staying.append(row)
            continue
        logits = row.model.readout(row.hidden[None])  # one row: the same kernel alone or in a batch
        token = int(sample(logits, row.request.sampling, [row.generator]))
        if row.drafted:  # a draft state: the draft goes on, or ends and is checked below
            row.drafted.append(token)
            row.draft_states.append(row.hidden)
            row.draft_logits.append(logits[0])
            if _draft_goes_on(row, token, logits[0]):
                row.next_id = token
                staying.append(row)
            else:
                checked.append(row)
        elif _put(row, [token]):
            staying.append(row)
    for group in by_model(checked):
        for loops in {row.request.draft_loops for row in group}:
            for rows_checked in step_batches([row for row in group if row.request.draft_loops == loops]):
                check_drafts(rows_checked)
        staying += [row for row in group if _put(row, row.drafted)]
    return staying


def _put(row: Row, ids: list[int]) -> bool:
    """Give the row's new ids to its reader, up to EOS or its budget; whether it goes on (then, drafting,
    with a new round from its last id)."""
    for token in ids:
        row.out.put((token, row.request.n_loops if row.request.draft_loops else row.loops))
        row.produced += 1
        if token == row.eos_id or row.produced == row.request.max_new_tokens:
            row.out.put(DONE)
            return False
    row.next_id = ids[-1]
    if row.request.draft_loops:  # a round: drafted ids from the last one on, at its position
        row.drafted, row.draft_states, row.draft_logits, row.round_at = [ids[-1]], [], [], row.position
    return True


def _draft_goes_on(row: Row, token: int, logits: torch.Tensor) -> bool:
    """Whether the row drafts another id after `token` (speculative_tokens' rule, row by row)."""
    request, steps = row.request, len(row.draft_states)
    ahead = worth_drafting_ahead(row.stats, break_even_share(request.draft_loops, request.n_loops))
    most = min(DRAFT_LENGTH if ahead else 1, request.max_new_tokens - row.produced)
    return steps < most and token != row.eos_id and float(logits.float().softmax(-1)[token]) >= DRAFT_CONFIDENCE


@torch.inference_mode()
def check_drafts(rows: list[Row]) -> None:
    """The speculative check of rows whose drafts ended, in one forward: each row's drafted positions
    through the loops after its draft loops up to its own loop count, carrying on from its draft states
    (padded to the longest draft, each row attending to its own cache), then the acceptance rule
    (speculative.judge). A row's ids become those the check keeps, its position moves past them."""
    rows = sorted(rows, key=lambda row: -row.request.n_loops)  # latest exit first, as step() runs them
    model, first = rows[0].model, rows[0].request.draft_loops
    lengths = [len(row.draft_states) for row in rows]
    longest = max(lengths)
    fed, states = [], []  # padded by repeating a row's last drafted position (its own positions: RowsCache)
    for row, n in zip(rows, lengths, strict=True):
        fed.append(row.drafted[:-1] + row.drafted[-2:-1] * (longest - n))
        states.append(torch.stack(row.draft_states + row.draft_states[-1:] * (longest - n)))
    caches, starts = [row.cache for row in rows], [row.round_at for row in rows]
    device = model.tok_embeddings.weight.device
    tokens = torch.tensor(fed, device=device)
    cache = RowsCache(list(zip(caches, starts, strict=True)), lengths)
    exits = [row.request.n_loops for row in rows]
    hidden = step(model, tokens, cache, 0, exits, first_loop=first, state=torch.stack(states)).hidden
    for r, row in enumerate(rows):
        n = lengths[r]
        drafted = torch.tensor(row.drafted[1:], device=device)
        full = torch.cat([model.readout(hidden[r, i][None]) for i in range(n)])  # row by row, as emit reads out
        kept, replacement = judge(drafted, torch.stack(row.draft_logits), full, row.request.sampling, row.generator)
        stats = row.stats
        stats.rounds, stats.drafted, stats.accepted = stats.rounds + 1, stats.drafted + n, stats.accepted + kept
        row.drafted = row.drafted[1 : kept + 1] + ([] if replacement is None else [replacement])
        row.position = row.round_at + len(row.drafted)


def step_batches(rows: list[Row]) -> list[list[Row]]:
    """One model's rows in the batches they may share: all of them where a row's bits do not depend on
    the row count (model.rows_steady), else one by one."""
    return [rows] if rows[0].model.rows_steady else [[row] for row in rows]


def advance(rows: list) -> int:
    """One forward step over one model's participants (batch_step): each request's last id at its position,
    each trace's branches at theirs; the most participants one forward stepped."""
    batches = step_batches(by_last_loop(rows))
    for batch in batches:
        widths = [row.width for row in batch]  # as fed: stepping may change them
        out, first = batch_step(batch[0].model, batch), 0
        for row, fed in zip(batch, widths, strict=True):
            row.stepped(out, first)
            first += fed
    return max(map(len, batches))


@torch.inference_mode()
def decode_rows(rows: list[Row]) -> list[list[int]]:
    """Decode prefilled rows (Row.branch) to their ends here, by the engine's own steps: the ids they give
    in any batch. Each row's ids, up to its EOS (included) or its byte budget."""
    live = rows
    while live := emit(live):
        for group in by_model(live):
            advance(group)
    ids = []
    for row in rows:
        mine = []
        while (item := row.out.get_nowait()) is not DONE:
            mine.append(item[0])
        ids.append(mine)
    return ids


class Engine:
    """Decodes every submitted request, each model's rows in one batch, and runs jobs between steps,
    on a thread of its own (the module's docstring)."""

    def __init__(self, max_rows: int = MAX_ROWS, max_cache_bytes: int = MAX_CACHE_BYTES) -> None:
        self.max_rows, self.max_cache_bytes = max_rows, max_cache_bytes
        self.waiting: queue.Queue[Row] = queue.Queue()
        self.jobs: queue.Queue[tuple[Callable, Future]] = queue.Queue()
        self.rows: list[Row] = []
        self.steps = 0  # forward steps run (for tests and figures)
        self.widest = 0  # the most requests one step decoded
        self.widest_prefill = 0  # the most prompts one forward prefilled
        self._checked: weakref.WeakKeyDictionary[LoopedTransformer, bool] = weakref.WeakKeyDictionary()
        self._step_seconds: weakref.WeakKeyDictionary[LoopedTransformer, float] = weakref.WeakKeyDictionary()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="emojilm-engine", daemon=True)
        self._thread.start()

    def cache_bytes(self) -> int:
        return sum(row.cache_bytes for row in self.rows)

    def stream(
        self,
        model: LoopedTransformer,
        tokenizer: ByteTokenizer,
        prompt: list[int],
        request: Request,
        truncated: bool = False,
        seed_drawn: bool = False,
    ) -> Iterator[Generation]:
        """generation.stream's snapshots and handoff, decoded in the batch. The request is submitted at
        once, so several streams opened one after another decode together even when read one by one. A
        drafting request drafts and checks as a row of the batch (emojilm.speculative's rule)."""
        row = self.submit(model, prompt, request, tokenizer.eos_id)
        result = Generation("", [], [], request.n_loops, list(prompt), truncated)
        snapshots = self._snapshots(tokenizer, row, result, seed_drawn)
        weakref.finalize(snapshots, row.cancelled.set)  # a stream dropped unread leaves the batch too
        return snapshots

    def _snapshots(self, tokenizer: ByteTokenizer, row: Row, result: Generation, seed_drawn: bool):
        for snapshot in stream_text(tokenizer, result, self.tokens(row)):
            if snapshot.done:  # the cache is the engine's until the row has left
                drafted = bool(row.request.draft_loops)
                snapshot.handoff = Handoff.of(row.request, row.cache, drafted=drafted, seed_drawn=seed_drawn)
            yield snapshot

    def submit(self, model: LoopedTransformer, prompt: list[int], request: Request, eos_id: int = -1) -> Row:
        """Queue a checked, seeded request (prompt ids, then Request.for_model's result); read it with tokens."""
        if request.seed is None and not request.sampling.greedy:
            raise ValueError("the engine decodes seeded requests")
        row = Row(model, request, list(prompt), eos_id)
        self.waiting.put(row)
        self._wake.set()
        return row

    def run(self, job: Callable[[], T]) -> T:
        """job() on the engine's thread, between two steps (the rows wait meanwhile); its result or error."""
        if threading.current_thread() is self._thread:
            return job()
        done: Future = Future()
        self.jobs.put((job, done))
        self._wake.set()
        return done.result()

    def decode(self, rows: list[Row]) -> list[list[int]]:
        """decode_rows in the batch, beside whatever else is in flight (called from a job: right there)."""
        if threading.current_thread() is self._thread:
            return decode_rows(rows)
        for row in rows:
            self.waiting.put(row)
        self._wake.set()
        try:
            return [[i for i, _ in self.tokens(row)] for row in rows]
        finally:
            for row in rows:
                row.cancelled.set()

    def tokens(self, row: Row) -> Iterator[tuple[int, int]]:
        """Yield (id, loops it used) up to max_new_tokens or EOS (included). Closing the iterator
        (the caller left) takes the request out at the next step."""
        try:
            while (item := row.out.get()) is not DONE:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            row.cancelled.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            while self.rows or not self.waiting.empty() or not self.jobs.empty():
                try:
                    self._gather()
                    self._admit()
                    self._emit()
                    if self.rows:
                        self._step()
                except Exception as err:  # not one row's fault (those fail alone): every row in flight learns it
                    for row in self.rows:
                        row.out.put(err)
                    self.rows = []
                self._run_job()

    def _run_job(self) -> None:
        """One waiting job, if any: one per step, so that rows keep moving between jobs."""
        try:
            job, done = self.jobs.get_nowait()
        except queue.Empty:
            return
        if done.set_running_or_notify_cancel():
            try:
                done.set_result(job())
            except BaseException as err:  # the caller gets it, as if job had run on its own thread
                done.set_exception(err)

    def _gather(self) -> None:
        """With no rows in flight and a request waiting: wait up to GATHER_SHARE of its model's last
        decode step (none before its first) for others arriving with it, so that they share its prefill
        instead of each waiting for the one before. A lone request waits that long once; rows that
        carry on a pass already run (a trace's, Row.branch) have no prefill to share, and go at once."""
        if self.rows or self.waiting.empty() or self.waiting.queue[0].prefilled:
            return
        deadline = time.monotonic() + GATHER_SHARE * self._step_seconds.get(self.waiting.queue[0].model, 0.0)
        while (left := deadline - time.monotonic()) > 0 and self.waiting.qsize() < self.max_rows:
            self._wake.wait(left)
            self._wake.clear()

    def _admit(self) -> None:
        """Take waiting requests while there is room (rows and KV cache memory), and prefill them."""
        joining: list[Row] = []
        while len(self.rows) + len(joining) < self.max_rows and not self.waiting.empty():
            row = self.waiting.queue[0]  # only this thread takes from the queue
            held = self.cache_bytes() + sum(r.cache_bytes for r in joining)
            if (self.rows or joining) and held + row.cache_bytes > self.max_cache_bytes:
                break  # it waits for rows to leave
            self.waiting.get()
            if not row.cancelled.is_set():
                joining.append(row)
        self.rows += [row for row in joining if row.prefilled]  # branches: already run (Row.branch, a trace's)
        for rows in by_model([row for row in joining if not row.prefilled]):
            for group in self._prefill_groups(rows):
                self._prefill(group)

    def _prefill_groups(self, rows: list[Row]) -> list[list[Row]]:
        """Rows whose prompts are prefilled in one forward: up to PREFILL_ROWS prompt bytes a forward where
        the model's products allow it (the module's docstring), else one by one."""
        if not self._prefills_together(rows[0].model):
            return [[row] for row in rows]
        groups: list[list[Row]] = []
        size = PREFILL_ROWS
        for row in rows:
            if size + len(row.prompt) > PREFILL_ROWS:
                groups.append([])
                size = 0
            groups[-1].append(row)
            size += len(row.prompt)
        return groups

    def _prefills_together(self, model: LoopedTransformer) -> bool:
        """Whether this model's prompts may be prefilled together (prompts_round_alike), checked once."""
        if model not in self._checked:
            self._checked[model] = prompts_round_alike(model)
        return self._checked[model]

    @torch.inference_mode()
    def _prefill(self, rows: list[Row]) -> None:
        """Prefill the rows' prompts in one forward, and let them join the batch. Should that fail,
        each is prefilled alone, so that a bad request fails alone, never the others."""
        model = rows[0].model
        device = model.tok_embeddings.weight.device
        try:
            caches = [model.new_cache(r.request.n_loops, 1, len(r.prompt) + r.request.max_new_tokens) for r in rows]
            lengths = [len(r.prompt) for r in rows]
            tokens = torch.tensor([[i for r in rows for i in r.prompt]], device=device)
            states = prefill(model, tokens, max(r.request.n_loops for r in rows), PromptsCache(caches, lengths))
        except Exception as err:
            if len(rows) > 1:
                for row in rows:
                    self._prefill([row])
            else:
                rows[0].out.put(err)
            return
        self.widest_prefill = max(self.widest_prefill, len(rows))
        end = 0
        for row, cache, length in zip(rows, caches, lengths, strict=True):
            end += length
            row.cache, row.hidden = cache, states[row.request.n_loops - 1][0, end - 1]
            row.loops, row.position = row.request.n_loops, length
            row.generator = row.request.sampling.generator()
            self.rows.append(row)

    @torch.inference_mode()
    def _emit(self) -> None:
        self.rows = emit(self.rows)

    @torch.inference_mode()
    def _step(self) -> None:
        """One forward step per model: each model's rows' last ids through their loops, together."""
        for rows in by_model(self.rows):
            started = time.perf_counter()
            self.widest = max(self.widest, advance(rows))
            self._step_seconds[rows[0].model] = time.perf_counter() - started
        self.steps += 1
