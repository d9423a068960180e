"""Which pending pairs the clusters need checked by their pixels, and only those checked.

Clusters are greedy stars (``dbdedup.build_clusters``): the best remaining image keeps every
remaining image it is linked to, so a member's pairs with the other members of its cluster, or
with images a better keeper takes, decide nothing (a picture's 20 copies are 190 pairs, of which
the clusters need the keeper's 19). On the accuracy set matching leaves 46,835 pairs to the check by
pixels; the clusters needed 13,097 of them checked (bench/report_phases.py).

``verify_needed_pairs`` plans on the graph the build clusters (``dbdedup.prepare_cluster_graph``
with the pending and unchecked pairs as open edges) and follows the build's rounds (every node with
no better linked neighbour keeps its linked neighbours, each joining its best keeper): where a
round depends on an open edge, that edge is checked first, a batch of them at a time, in worker
processes kept for the whole plan (``verify_workers.verify_pending_pairs``). A rejected edge is
gone, a verified one links. When no open edge decides anything any more, the pairs left are
marked ``verify_reason = 'unchecked'`` (``verified`` false: they link nothing); a later plan (new
images, a keeper gone: a report's, or `dbdedup verify`'s after a ``refresh()``, which has no plan)
checks those it then needs, and ``dbdedup verify --unchecked`` checks them all. The build gives the
clusters it would give with every pair checked, whatever the unchecked pairs' verdicts (tests/test_verify_plan.py checks this on random graphs). The keeper pairs
``clusters.link_keepers`` proposes then start from an unchecked pair as from a verified one.

A batch smaller than MIN_BATCH is filled up with the next open edges a rejection would make
needed, so that a family of look-alikes, rejected pair after pair, costs a few batches and not one
round trip per link.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

import psycopg

from . import locks
from .sqlfiles import named_queries

# a batch of checks smaller than this is filled up with open edges the next steps may need: a batch
# costs about 0.2 s of its own (the plan of its order, the queries, the writes; the workers are kept),
# and two workers need a few chunks (verify_workers.CHUNK_PAIRS) to stay busy
MIN_BATCH = 384
# the verdicts that aligned the two pictures and compared their overlap's colours: the only ones by which
# the build keeps a colour picture as a copy of a greyscale keeper (a frame or a crop may add the colours;
# dbdedup.prepare_cluster_graph)
ALIGNED_REASONS = ("geometry", "dense")


def _queries() -> dict[str, str]:
    return named_queries("queries/verify_plan.sql")


@dataclass
class Edge:
    """A link of the graph between two nodes (a node: the copies of one file). ``pair`` is the
    (image_a, image_b) of dbdedup.pairs an open edge stands for; ``greyscale_keeper``: the
    better-ranked node is greyscale and the other colour with a grey middle, so that the build drops
    the link unless an alignment made it (a frame may add the colours)."""

    pair: tuple[int, int] | None
    greyscale_keeper: bool = False

    @property
    def open(self) -> bool:
        return self.pair is not None


@dataclass
class Graph:
    """The nodes still to be clustered and their links; nodes are keeper ranks (smaller first)."""

    links: dict[int, dict[int, Edge]] = field(default_factory=dict)
    pair_edges: dict[tuple[int, int], tuple[int, int]] = field(default_factory=dict)  # open pair -> its nodes
    apart: set[tuple[int, int]] = field(default_factory=set)  # (a, b), a < b: reviewers' "not a duplicate"

    @classmethod
    def from_rows(cls, rows: Iterable[tuple], apart: Iterable[tuple[int, int]] = ()) -> "Graph":
        """From rows (node_a, node_b, open, image_a, image_b, greyscale_keeper), node_a < node_b, and the
        pairs of nodes judged apart (a < b)."""
        graph = cls(apart=set(apart))
        for a, b, is_open, image_a, image_b, greyscale_keeper in rows:
            edge = Edge((image_a, image_b) if is_open else None, bool(greyscale_keeper))
            graph.links.setdefault(a, {})[b] = edge
            graph.links.setdefault(b, {})[a] = edge
            if is_open:
                graph.pair_edges[(image_a, image_b)] = (a, b)
        return graph

    def _drop_edge(self, a: int, b: int) -> None:
        edge = self.links[a].pop(b)
        del self.links[b][a]
        if edge.pair is not None:
            self.pair_edges.pop(edge.pair, None)
        for node in (a, b):
            if not self.links[node]:
                del self.links[node]

    def _drop_node(self, node: int) -> None:
        for other in list(self.links.get(node, ())):
            self._drop_edge(node, other)

    def next_checks(self, min_batch: int | None = None) -> list[tuple[int, int]]:
        """Run the build's rounds as far as the checked edges decide them, and return the open pairs
        the next step needs checked (filled up to ``min_batch``, default MIN_BATCH); an empty list
        when the clustering is decided.

        A round of the build: every node with no better linked neighbour keeps its linked
        neighbours (each joins its best keeper; one judged apart from a better one of them waits).
        So a node with no better neighbour at all needs its open edges checked (they decide its
        members; not those to a neighbour linked to a better keeper), and a node whose better
        neighbours are all open, and that has worse ones it could keep, needs one of them checked,
        the best first (one verified edge is enough to say it is no keeper this round: a copy's edge
        with the keeper usually is)."""
        while self.links:
            keepers, needed, undecided = [], [], []
            for node, others in self.links.items():
                better = [other for other in others if other < node]
                if not better:
                    keepers.append(node)
                elif len(better) < len(others) and all(others[other].open for other in better):
                    # (a node with no worse neighbour keeps nobody, keeper or not: nothing to decide)
                    undecided.append(node)
                    needed.append(others[min(better)].pair)
            # (a neighbour linked to a better keeper joins that one, whatever its open edges to others)
            joins: dict[int, int] = {}
            for node in keepers:
                for other, edge in self.links[node].items():
                    if not edge.open and joins.get(other, node) >= node:
                        joins[other] = node
            needed.extend(edge.pair for node in keepers for other, edge in self.links[node].items()
                          if edge.open and joins.get(other, node) >= node)
            if needed:
                return self._filled(list(dict.fromkeys(needed)), undecided,
                                    MIN_BATCH if min_batch is None else min_batch)
            members = set(joins)
            if self.apart:
                # a member judged apart from a better member of its keeper (or the keeper) waits for a
                # later round, as in the build; a keeper left with no member stays too
                kept: dict[int, list[int]] = {}
                for member, keeper in joins.items():
                    kept.setdefault(keeper, [keeper]).append(member)
                members = {member for member, keeper in joins.items()
                           if not any(other < member and (other, member) in self.apart for other in kept[keeper])}
                keepers = sorted({joins[member] for member in members})
            for node in keepers + sorted(members):
                self._drop_node(node)
        return []

    def _filled(self, needed: list, undecided: list[int], min_batch: int) -> list[tuple[int, int]]:
        """``needed``, then the other open edges of the undecided nodes to better ones (which the next
        steps check when the first is rejected), best nodes first, up to ``min_batch`` pairs."""
        chosen = dict.fromkeys(needed)
        for node in sorted(undecided):
            if len(chosen) >= min_batch:
                break
            for other, edge in sorted(self.links[node].items()):
                if other < node and edge.open:
                    chosen.setdefault(edge.pair)
        return list(chosen)

    def checked(self, verdicts: Iterable[tuple[int, int, bool, str | None]]) -> None:
        """Take the verdicts (image_a, image_b, verified, verify_reason) of checked open pairs: a
        verified pair links (unless the build would drop it: a greyscale keeper of a colour picture,
        by any measure but an alignment, ALIGNED_REASONS), any other is no edge."""
        for image_a, image_b, verified, reason in verdicts:
            nodes = self.pair_edges.pop((image_a, image_b), None)
            if nodes is None:
                continue
            a, b = nodes
            edge = self.links[a][b]
            if verified and not (edge.greyscale_keeper and reason not in ALIGNED_REASONS):
                edge.pair = None
            else:
                self._drop_edge(a, b)

    @property
    def open_edges(self) -> int:
        return len(self.pair_edges)


class _Cumulative:
    """Progress callbacks over several runs of ``verify_pending_pairs``: one count of pairs found and
    done for the whole plan (each run counts from zero)."""

    def __init__(self, progress):
        self.progress = progress
        self.found = self.done = self.errors = 0
        self.run_found = self.run_done = self.run_errors = 0

    def pairs_found(self, pending: int) -> None:
        self.run_found = pending
        if self.progress is not None:
            self.progress.pairs_found(self.found + pending)

    def pairs_done(self, done: int, errors: int) -> None:
        self.run_done, self.run_errors = done, errors
        if self.progress is not None:
            self.progress.pairs_done(self.done + done, self.errors + errors)

    def run_ended(self) -> None:
        self.found += self.run_found
        self.done += self.run_done
        self.errors += self.run_errors
        self.run_found = self.run_done = self.run_errors = 0


def _graph(conn: psycopg.Connection, settings, q: dict[str, str]) -> Graph:
    params = {"hash_kind": settings.hash_kind, "max_distance": settings.threshold, "keeper_rule": settings.keeper_rule,
              "reference_paths": list(settings.reference_paths), "rule": settings.rule,
              "min_similarity": settings.min_similarity, "confirm_distance": settings.confirm_distance,
              "transform_distance": settings.transform_distance}
    with conn.transaction():  # (its temporary tables are dropped at its end)
        conn.execute(q["prepare_graph"], params)
        return Graph.from_rows(conn.execute(q["graph_edges"]).fetchall(), conn.execute(q["graph_apart"]).fetchall())


def verify_needed_pairs(conn: psycopg.Connection, settings, *, workers: int | None = None, progress=None,
                        lock_wait: float | None = None, on_wait: Callable[[str], None] | None = None,
                        keypoints=None):
    """Check by their pixels the pending (and unchecked) pairs that the clusters of ``settings`` (a
    ``clusters.ClusterSettings`` as applied) need, and mark the others unchecked; returns the merged
    ``verify_workers.VerifySummary`` of the checks (None when none was needed), its ``unchecked``
    the pairs left so. Each batch is a ``verify_pending_pairs`` run (``workers``, ``progress``,
    ``keypoints`` as there). Holds the verification lock throughout (waiting up to ``lock_wait``
    seconds for it)."""
    if keypoints is None:
        from .keypoint_store import KeypointStore

        with KeypointStore() as store:
            return verify_needed_pairs(conn, settings, workers=workers, progress=progress, lock_wait=lock_wait,
                                       on_wait=on_wait, keypoints=store)
    from .structure_check import check_structure
    from .verify_workers import SharedWorkers, default_workers, merged, take_verify_lock, verify_pending_pairs

    q = _queries()
    take_verify_lock(conn, lock_wait, on_wait)
    summary = None
    progress = _Cumulative(progress)
    try:
        # signature-verified pairs not measured yet: those the structure check fails are open edges too
        check_structure(conn, workers)
        with conn.transaction():
            deferred = conn.execute(q["defer_pending"]).rowcount
            if deferred:
                conn.execute(q["clusters_stale"], {"deferred": deferred})
        with SharedWorkers(conn, max(1, int(workers or default_workers())), keypoints) as shared:
            while True:
                # a plan on the graph as the build will see it; once checks were made, planned again
                # to confirm (an open pair stands for its two files' copies: the build's rules decide)
                graph, checked = _graph(conn, settings, q), 0
                while needed := graph.next_checks():
                    keys = {"hash_kind": settings.hash_kind, "image_a": [a for a, _ in needed],
                            "image_b": [b for _, b in needed]}
                    with conn.transaction():
                        conn.execute(q["reopen"], keys)
                    run = verify_pending_pairs(conn, workers=workers, progress=progress, lock_wait=lock_wait,
                                               on_wait=on_wait, keypoints=keypoints, shared=shared)
                    summary = merged(summary, run)
                    progress.run_ended()
                    with conn.transaction():
                        graph.checked(conn.execute(q["verdicts"], keys).fetchall())
                    checked += len(needed)
                if not checked:
                    break
        if summary is not None:
            with conn.transaction():
                summary.unchecked = conn.execute(q["unchecked"]).fetchone()[0]
    finally:
        if not conn.closed and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            locks.release(conn, key=locks.VERIFY_LOCK_KEY)
    return summary


def has_unchecked_pairs(conn: psycopg.Connection) -> bool:
    """Whether pairs were left unchecked by an earlier plan (another clustering may need them)."""
    with conn.transaction():
        return conn.execute(_queries()["any_unchecked"]).fetchone()[0]


def mark_clusters_stale(conn: psycopg.Connection, verdicts: int) -> None:
    """Count ``verdicts`` given since the clusters were built (``cluster_parameters.pending_at_build``), so
    that the next command builds them again: `dbdedup verify` gives verdicts between two builds."""
    if verdicts:
        with conn.transaction():
            conn.execute(_queries()["clusters_stale"], {"deferred": verdicts})


def reopen_unchecked(conn: psycopg.Connection) -> int:
    """Make the pairs left unchecked pending again (for `dbdedup verify --unchecked`); returns how many."""
    with conn.transaction():
        return conn.execute(_queries()["reopen_all"]).rowcount
