"""One record per LLM call: which records are layers of one call, and which of them the store keeps.

Two instrumentations that see one call (llmtally beside the official GenAI instrumentation, OpenLLMetry beside the
Anthropic SDK's own spans...) each send a record of it, in one export or in different ones, to one replica or to
several. A call is the set of its layers; the store keeps one record per call, the richest (`richness`), and
remembers the ids of the others so that a later layer, or a retried one, finds the call again.

A record is a layer of a call already known (stored, or earlier in the batch) on this evidence, in this order:

1. the same record id (the span id): the same layer again (a retry; llmtally's span beside its audit event);
2. span parentage: its parent span is a layer of the call, or it is the parent of one (nested instrumentations);
3. the provider's response id, with starts at most `ID_WINDOW_NS` apart;
4. the provider's request id, likewise;
5. time and model, only between records that both lack a response id (failed calls, embeddings): a layer from
   another instrumentation (a source the call does not have yet) of the same service and requested model, starting
   at most `TIME_WINDOW_NS` apart, the intervals overlapping; equal request ids first, then the same trace, then the
   closest start and end.

A call never holds two llmtally records with different ids (llmtally records each call once): such evidence is
ignored. Where the evidence cannot tell two calls apart (two identical calls at once without response ids, not
nested), layers may be paired across the two calls: each call is still counted once, the kept records may swap.
A child span without a response id under a record with one is joined when it arrives after its parent (parentage),
not before it (stored records are not looked up by their parent span).
"""

from __future__ import annotations

import bisect
import operator
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from ..normalise.record import Record

TIME_WINDOW_NS = 1_000_000_000
ID_WINDOW_NS = 60_000_000_000
# The time evidence's locks (PostgreSQL): buckets twice the window wide, so two starts within the window always
# share a bucket among the two each one locks.
TIME_BUCKET_NS = 2 * TIME_WINDOW_NS
LLMTALLY = "llmtally"
# Among equally rich records, the first of these sources is kept.
PREFERENCE = ("llmtally", "anthropic", "otel-genai", "openllmetry", "openlit")
_DETAILS = operator.attrgetter(
    "response_id",
    "request_id",
    "response_model",
    "http_status",
    "ttft_s",
    "finish_reasons",
    "stream_outcome",
    "service_tier",
    "error_message",
    "user_id",
    "api_key",
    "feature",
    "department",
    "ratelimits",
    "events",
    "units",
    "cached_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
)
_EMPTY: tuple[object, ...] = (None, "", 0, [], {})


def richness(record: Record) -> tuple[int, int, int, str]:
    """How rich a record is (greater is richer): token counts reported at all, then how many details it holds
    (ids, response model, status, time to first token, finish reasons, attribution, rate limits, token kinds...),
    then the source's rank in `PREFERENCE`, then its id (so that the same layers always keep the same one)."""
    details = sum(1 for value in _DETAILS(record) if value not in _EMPTY)
    rank = len(PREFERENCE) - PREFERENCE.index(record.source) if record.source in PREFERENCE else 0
    return (record.usage_source != "none", details, rank, record.record_id)


def lock_keys(records: Iterable[Record]) -> list[str]:
    """Keys that two concurrent writers of layers of one call share (see the evidence above): a record's response
    id, or without one its id and the two time buckets nearest its start for its service and model; and its parent
    span's id. Sorted, so that writers take them in one order. (A record with a response id does not lock its own
    id: its child spans, its retries and llmtally's span beside its audit event have the same response id. Only a
    child without one, written at the same moment elsewhere, is not kept apart: see the module's docstring.)"""
    keys: set[str] = set()
    for r in records:
        if r.parent_span_id:
            keys.add("i:" + r.parent_span_id)
        if r.response_id:
            keys.add("r:" + r.response_id)
        else:
            keys.add("i:" + r.record_id)
            bucket, offset = divmod(r.start_time_ns, TIME_BUCKET_NS)
            near = bucket + 1 if offset >= TIME_BUCKET_NS // 2 else bucket - 1
            for b in (bucket, near):
                keys.add(f"t:{r.service or ''}\x1f{r.request_model}\x1f{b}")
    return sorted(keys)


@dataclass(eq=False)
class _Call:
    """A call as known while resolving a batch: its layers' records (the stored record of a stored call first) and
    the ids of its other stored layers."""

    layers: list[Record]
    sources: set[str]
    ids: set[str]
    stored: list[Record] = field(default_factory=list)  # the records stored for it (several once calls merge)
    into: _Call | None = None  # merged into that call

    def root(self) -> _Call:
        call = self
        while call.into is not None:
            call = call.into
        return call


@dataclass
class Plan:
    """What a batch does to the store: records of new calls to insert, stored rows to overwrite (row id -> record)
    or delete, layer ids to point at the record kept for their call, and the rollup change (records added,
    records taken away). `replaced` pairs each stored record that a richer one replaced with it (one stored call)."""

    new: list[Record] = field(default_factory=list)
    updates: list[tuple[str, Record]] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    layers: list[tuple[str, str, str, int]] = field(default_factory=list)  # (layer id, kept id, source, start)
    repoint: list[tuple[str, str]] = field(default_factory=list)  # (former kept id, kept id)
    added: list[Record] = field(default_factory=list)
    removed: list[Record] = field(default_factory=list)
    replaced: list[tuple[Record, Record]] = field(default_factory=list)
    rows: list[Record] = field(default_factory=list)  # the stored records of the calls the batch joins, as read


class Stored(list[Record]):
    """What one write stored: the records of the calls new to the store (the list itself), and `replaced`: (stored
    record, richer record of the same call that replaced it) pairs."""

    def __init__(self, new: Iterable[Record] = (), replaced: Iterable[tuple[Record, Record]] = ()) -> None:
        super().__init__(new)
        self.replaced = list(replaced)


class _Calls:
    """The calls of a batch and of the stored records it may join, with the indexes the evidence looks in."""

    def __init__(self) -> None:
        self.by_id: dict[str, _Call] = {}
        self.by_parent: dict[str, list[tuple[Record, _Call]]] = {}
        self.by_response: dict[str, list[tuple[Record, _Call]]] = {}
        self.by_request: dict[str, list[tuple[Record, _Call]]] = {}
        # Records without a response id, per (service, requested model) and source, in start-time order: the
        # time-and-model evidence looks only at other sources' records within its window, so a batch of one
        # instrumentation's records costs n log n, not n^2.
        self.unanswered: dict[tuple[str, str], dict[str, _Unanswered]] = {}

    def add(self, record: Record, call: _Call) -> None:
        """Indexes `record` as a layer of `call`."""
        self.by_id[record.record_id] = call
        if record.parent_span_id:
            self.by_parent.setdefault(record.parent_span_id, []).append((record, call))
        if record.response_id:
            self.by_response.setdefault(record.response_id, []).append((record, call))
        else:
            by_source = self.unanswered.setdefault((record.service or "", record.request_model), {})
            found = by_source.get(record.source)
            if found is None:
                found = by_source[record.source] = _Unanswered()
            found.add(record, call)
        if record.request_id:
            self.by_request.setdefault(record.request_id, []).append((record, call))

    def start(self, record: Record, stored: bool) -> _Call:
        sources = set(record.seen_by or (record.source,)) if stored else {record.source}
        call = _Call([record], sources, {record.record_id})
        if stored:
            call.stored.append(record)
        self.add(record, call)
        return call

    def evidence(self, r: Record, *, ids: bool = True) -> list[_Call]:
        """The known calls `r` is a layer of, strongest evidence first (see the module's docstring): by parentage,
        then (with `ids`) by response and request id; by time and model only when nothing else links it."""
        found: list[_Call] = []
        if r.parent_span_id and r.parent_span_id in self.by_id:
            found.append(self.by_id[r.parent_span_id])
        if r.span_id:
            found += [call for _, call in self.by_parent.get(r.span_id, ())]
        for index, key in ((self.by_response, r.response_id), (self.by_request, r.request_id)):
            if key and ids:
                found += [call for other, call in index.get(key, ()) if _near(r, other, ID_WINDOW_NS)]
        if not found and ids and not r.response_id:
            best = self._by_time(r)
            if best is not None:
                found.append(best)
        calls: list[_Call] = []
        for call in found:
            root = call.root()
            if root not in calls and _may_join(root, r):
                calls.append(root)
        return calls

    def _by_time(self, r: Record) -> _Call | None:
        best: tuple[tuple[bool, bool, int], _Call] | None = None
        by_source = self.unanswered.get((r.service or "", r.request_model), {})
        near = (pair for src, found in by_source.items() if src != r.source for pair in found.near(r.start_time_ns))
        for other, call in near:
            root = call.root()
            if r.source in root.sources or not _near(r, other, TIME_WINDOW_NS) or not _overlap(r, other):
                continue
            if r.request_id and other.request_id and r.request_id != other.request_id:
                continue
            distance = abs(r.start_time_ns - other.start_time_ns) + abs(r.end_time_ns - other.end_time_ns)
            rank = (bool(r.request_id) and r.request_id == other.request_id, r.trace_id == other.trace_id, -distance)
            if best is None or rank > best[0]:
                best = (rank, root)
        return None if best is None else best[1]

    def join(self, call: _Call, r: Record) -> None:
        call.layers.append(r)
        call.sources.add(r.source)
        call.ids.add(r.record_id)
        self.add(r, call)

    def merge(self, keep: _Call, other: _Call) -> None:
        if LLMTALLY in keep.sources and LLMTALLY in other.sources:
            return  # two llmtally records: two calls, whatever else seemed to link them
        other.into = keep
        keep.layers += other.layers
        keep.sources |= other.sources
        keep.ids |= other.ids
        keep.stored += other.stored


class _Unanswered:
    """Layers without a response id, in start-time order."""

    __slots__ = ("items", "starts")

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.items: list[tuple[Record, _Call]] = []

    def add(self, record: Record, call: _Call) -> None:
        at = bisect.bisect_right(self.starts, record.start_time_ns)
        self.starts.insert(at, record.start_time_ns)
        self.items.insert(at, (record, call))

    def near(self, start_ns: int) -> list[tuple[Record, _Call]]:
        """The layers starting within the time evidence's window of `start_ns`."""
        lo = bisect.bisect_left(self.starts, start_ns - TIME_WINDOW_NS)
        hi = bisect.bisect_right(self.starts, start_ns + TIME_WINDOW_NS)
        return self.items[lo:hi]


def _near(a: Record, b: Record, window_ns: int) -> bool:
    return abs(a.start_time_ns - b.start_time_ns) <= window_ns


def _overlap(a: Record, b: Record) -> bool:
    return a.start_time_ns <= b.end_time_ns and b.start_time_ns <= a.end_time_ns


def _may_join(call: _Call, r: Record) -> bool:
    """Whether `r` may be a further layer of `call`: not a second llmtally record of it."""
    return not (r.source == LLMTALLY and LLMTALLY in call.sources and r.record_id not in call.ids)


def resolve(batch: Sequence[Record], stored: Sequence[Record], stored_layers: dict[str, str]) -> Plan:
    """The plan for `batch` given the stored records it may join (`stored`: records as stored, each its call's) and
    the stored layer ids known to belong to them (`stored_layers`: layer id -> the id of its call's record)."""
    alone = _alone(batch, stored, stored_layers)
    if len(alone) == len(batch):  # the usual batch: only calls new to the store, each seen once
        return Plan(new=list(batch), added=list(batch))
    known = _Calls()
    for record in stored:
        if record.record_id not in known.by_id:
            known.start(record, stored=True)
    for layer_id, kept_id in stored_layers.items():
        call = known.by_id.get(kept_id)
        if call is not None:
            known.by_id.setdefault(layer_id, call)
            call.ids.add(layer_id)
    touched: list[_Call] = []
    for r in batch:
        if id(r) in alone:
            continue
        seen = known.by_id.get(r.record_id)
        if seen is not None:  # a layer seen before: only its parentage may say more
            if r.parent_span_id:
                call = seen.root()
                _fill_parent(call, r)
                known.by_parent.setdefault(r.parent_span_id, []).append((r, call))
                for other in known.evidence(r, ids=False):
                    if other is not call:
                        known.merge(call, other)
                touched.append(call)
            continue
        calls = known.evidence(r)
        if not calls:
            touched.append(known.start(r, stored=False))
            continue
        known.join(calls[0], r)
        for other in calls[1:]:
            known.merge(calls[0], other)
        touched.append(calls[0])
    plan = _plan(touched)
    lone = [r for r in batch if id(r) in alone]
    plan.new += lone
    plan.added += lone
    order = {r.record_id: i for i, r in reversed(list(enumerate(batch)))}
    plan.new.sort(key=lambda r: order[r.record_id])  # in batch order
    return plan


def _alone(batch: Sequence[Record], stored: Sequence[Record], stored_layers: dict[str, str]) -> set[int]:
    """The `id()`s of the batch's records that no evidence links to any other record (batch or stored): each a new
    call by itself. None of its id, parent span, response id and request id is shared with, or the parent span of,
    another record; and one without a response id has no record of another instrumentation, of its service and
    model and without a response id, to be paired with by time."""
    ids = Counter(r.record_id for r in batch)
    ids.update(r.record_id for r in stored)
    ids.update(stored_layers.keys())
    parents = {r.parent_span_id for r in (*batch, *stored) if r.parent_span_id}
    responses = Counter(r.response_id for r in (*batch, *stored) if r.response_id)
    requests = Counter(r.request_id for r in (*batch, *stored) if r.request_id)
    unanswered: dict[tuple[str, str], set[str]] = {}  # (service, model) -> the sources of records without a response id
    for r in (*batch, *stored):
        if not r.response_id:
            unanswered.setdefault((r.service or "", r.request_model), set()).update(r.seen_by or (r.source,))
    return {
        id(r)
        for r in batch
        if (
            responses[r.response_id] == 1
            if r.response_id
            else len(unanswered[(r.service or "", r.request_model)]) == 1  # no other source to pair with by time
        )
        and ids[r.record_id] == 1
        and r.span_id not in parents
        and (not r.parent_span_id or r.parent_span_id not in ids)
        and (not r.request_id or requests[r.request_id] == 1)
    }


def _fill_parent(call: _Call, r: Record) -> None:
    """A layer seen again with its parent span (llmtally's span after its audit event): the record of it not stored
    yet takes the parent."""
    for i, layer in enumerate(call.layers):
        if layer.record_id == r.record_id and not layer.parent_span_id and not _among(layer, call.stored):
            call.layers[i] = replace(layer, parent_span_id=r.parent_span_id)


def _among(record: Record, records: Iterable[Record]) -> bool:
    return any(record is other for other in records)


def _plan(touched: Iterable[_Call]) -> Plan:
    plan = Plan()
    done: set[int] = set()
    for call in touched:
        call = call.root()
        if id(call) in done:
            continue
        done.add(id(call))
        kept = max(call.layers, key=richness)
        seen_by = sorted(call.sources) if len(call.sources) > 1 else []
        if call.stored:
            plan.rows += call.stored
            _plan_stored(plan, call.stored, kept, seen_by)
        else:
            plan.new.append(replace(kept, seen_by=seen_by) if seen_by else kept)
            plan.added.append(kept)
        plan.layers += [(r.record_id, kept.record_id, r.source, r.start_time_ns) for r in call.layers if r is not kept]
    return plan


def _plan_stored(plan: Plan, rows: list[Record], kept: Record, seen_by: list[str]) -> None:
    """A call with stored records (one per stored call merged into it): the kept record's row stays, or the first
    row takes the kept record; the other rows go. Rollups lose the stored records not kept, gain the kept one if it
    is new."""
    stays = kept if _among(kept, rows) else rows[0]
    for row in rows:
        if row is not stays:
            plan.deletes.append(row.record_id)
        if row is not kept:
            plan.removed.append(row)
            plan.repoint.append((row.record_id, kept.record_id))
    if not _among(kept, rows):
        plan.added.append(kept)
        if len(rows) == 1:
            plan.replaced.append((stays, kept))
    if kept is not stays or seen_by != stays.seen_by:
        plan.updates.append((stays.record_id, replace(kept, seen_by=seen_by)))
