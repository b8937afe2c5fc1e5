"""One field's terms in sorted order, kept in chunks so that a change re-sorts only what it touches.

The seed's ``vocabulary`` key and GET /api/vocabulary need each field as a sorted JSON array. At a
million terms one ``sorted()`` plus one ``json.dumps`` of a field costs half a second of CPU in
one GIL-holding call, so doing it per version made the bridge's cost follow the vocabulary, not
the change. Here the order is a tuple of chunks of about :data:`CHUNK_TERMS` terms, each with its
JSON encoded once: a change of a few terms copies the chunks it lands in plus the tuple of chunk
references, and every other chunk (with its encoding) is shared with the previous version.
"""

from __future__ import annotations

import bisect
import itertools
import json
from collections.abc import Collection, Iterator, Sequence
from typing import Final

CHUNK_TERMS: Final = 1024
"""Target chunk length: a change copies about this many references per chunk it touches, and a
whole field is about len / CHUNK_TERMS chunk references."""


class Chunk:
    """A run of consecutive sorted terms and, once asked for, their JSON (no brackets)."""

    __slots__ = ("_json", "terms")

    def __init__(self, terms: tuple[str, ...]) -> None:
        self.terms = terms
        self._json: bytes | None = None

    def json(self) -> bytes:
        if self._json is None:
            encoded = json.dumps(self.terms, ensure_ascii=False, separators=(",", ":"))
            self._json = encoded[1:-1].encode()
        return self._json

    @property
    def encoded(self) -> bool:
        return self._json is not None


class SortedTerms:
    """Immutable sorted sequence of distinct terms; :meth:`changed` costs what a change costs."""

    __slots__ = ("_chunk_terms", "_chunks", "_firsts", "_flat", "_length")

    def __init__(self, chunks: tuple[Chunk, ...], chunk_terms: int = CHUNK_TERMS) -> None:
        self._chunks = chunks
        self._chunk_terms = chunk_terms
        self._firsts = tuple(chunk.terms[0] for chunk in chunks)
        self._length = sum(len(chunk.terms) for chunk in chunks)
        self._flat: tuple[str, ...] | None = None

    @classmethod
    def from_sorted(cls, terms: Sequence[str], chunk_terms: int = CHUNK_TERMS) -> SortedTerms:
        """Chunk terms that are already sorted and distinct."""
        chunks = (
            Chunk(tuple(terms[start : start + chunk_terms]))
            for start in range(0, len(terms), chunk_terms)
        )
        return cls(tuple(chunks), chunk_terms)

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[str]:
        return itertools.chain.from_iterable(chunk.terms for chunk in self._chunks)

    @property
    def chunks(self) -> tuple[Chunk, ...]:
        return self._chunks

    def flat(self) -> tuple[str, ...]:
        """All terms as one tuple (built on first use: O(size), for callers that need a tuple)."""
        if self._flat is None:
            self._flat = tuple(self)
        return self._flat

    def changed(self, added: Collection[str], removed: Collection[str]) -> SortedTerms:
        """The order with ``added`` (all absent here) inserted and ``removed`` (all present)
        taken out; unchanged chunks are shared. A change of more than four chunks' worth of
        terms rebuilds the order in one linear merge instead."""
        if len(added) + len(removed) > 4 * self._chunk_terms or not self._chunks:
            return self._merged(added, removed)
        edited: dict[int, list[str]] = {}
        for term in removed:
            edit = self._edit(edited, term)
            del edit[bisect.bisect_left(edit, term)]
        for term in added:
            bisect.insort(self._edit(edited, term), term)
        chunks: list[Chunk] = []
        for index, chunk in enumerate(self._chunks):
            terms = edited.get(index)
            if terms is None:
                chunks.append(chunk)
            elif len(terms) > 2 * self._chunk_terms:
                chunks.extend(SortedTerms.from_sorted(terms, self._chunk_terms)._chunks)
            elif terms:
                chunks.append(Chunk(tuple(terms)))
        return SortedTerms(tuple(chunks), self._chunk_terms)

    def _edit(self, edited: dict[int, list[str]], term: str) -> list[str]:
        """The editable copy of the chunk whose range holds ``term``."""
        index = max(bisect.bisect_right(self._firsts, term) - 1, 0)
        terms = edited.get(index)
        if terms is None:
            terms = edited[index] = list(self._chunks[index].terms)
        return terms

    def _merged(self, added: Collection[str], removed: Collection[str]) -> SortedTerms:
        """Rebuild in linear time: the kept terms and the sorted additions are two runs, which
        Python's sort merges without comparing within a run."""
        terms = list(self)
        if removed:
            gone = set(removed)
            terms = [term for term in terms if term not in gone]
        terms.extend(sorted(added))
        terms.sort()
        return SortedTerms.from_sorted(terms, self._chunk_terms)
