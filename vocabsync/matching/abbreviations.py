"""The domain's abbreviations ("Bldg", "Rehab", "Ph.", "Sto.", "Brgy" ...) and what they stand for.

Both the vocabulary and the questions are read through this table, so "Sto. Nino", "Santo Nino"
and "Sto Nino" are the same words, whichever of them the database holds. An abbreviation may stand
for several words ("QC": "Quezon City") or for several alternatives ("St": street or saint).
Deployments extend or override it with ``VOCABSYNC_MATCH_ABBREVIATIONS`` (see the README).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from typing import Final

from rapidfuzz.distance import OSA

from vocabsync.matching.text import words

MIN_TYPO_KEY = 4
"""Shortest abbreviation that may be recognised with a typo ("Brgy", not "St")."""

Expansion = tuple[str, ...]
"""The folded words an abbreviation stands for."""

DEFAULT_ABBREVIATIONS: Final[Mapping[str, str | Sequence[str]]] = {
    # buildings, works, phases
    "Bldg": "Building",
    "Bldgs": "Buildings",
    "Rehab": "Rehabilitation",
    "Dev": "Development",
    "Devt": "Development",
    "Dvpt": "Development",
    "Const": "Construction",
    "Constn": "Construction",
    "Constr": "Construction",
    "Ph": "Phase",
    "Pkg": "Package",
    "Impr": "Improvement",
    "Imprv": "Improvement",
    "Improv": "Improvement",
    "Maint": "Maintenance",
    "Mtce": "Maintenance",
    "Equip": "Equipment",
    "Eqpt": "Equipment",
    "Sys": "System",
    "Stn": "Station",
    "Ctr": "Center",
    "Cntr": "Center",
    "Hosp": "Hospital",
    "Sch": "School",
    "Elem": "Elementary",
    "Natl": "National",
    "Govt": "Government",
    "Mun": "Municipal",
    "Prov": "Provincial",
    "Dept": "Department",
    "Mgmt": "Management",
    "Admin": "Administration",
    "Elec": "Electrical",
    "Transpo": "Transportation",
    "Mob": "Mobilization",
    "Demob": "Demobilization",
    "Misc": "Miscellaneous",
    "Addl": "Additional",
    "Subcon": ("Subcontractor", "Subcontracted", "Subcontract"),
    "Imp": "Improvement",
    "Matls": "Materials",
    "Mats": "Materials",
    # places and addresses
    "Sto": "Santo",
    "Sta": "Santa",
    "Brgy": "Barangay",
    "Bgy": "Barangay",
    "St": ("Street", "Saint"),
    "Ave": "Avenue",
    "Av": "Avenue",
    "Rd": "Road",
    "Hwy": "Highway",
    "Blvd": "Boulevard",
    "Mt": "Mount",
    "Ft": "Fort",
    "Gen": "General",
    "Pres": "President",
    "QC": "Quezon City",
    "CDO": "Cagayan de Oro",
    "GenSan": "General Santos",
    "NCR": "National Capital Region",
    # months (file names)
    "Jan": "January",
    "Feb": "February",
    "Mar": "March",
    "Apr": "April",
    "Jun": "June",
    "Jul": "July",
    "Aug": "August",
    "Sep": "September",
    "Sept": "September",
    "Oct": "October",
    "Nov": "November",
    "Dec": "December",
    # roman numerals of phases and packages ("Phase II"); "I", "V", "X" are too ambiguous
    "II": "2",
    "III": "3",
    "IV": "4",
    "VI": "6",
    "VII": "7",
    "VIII": "8",
    "IX": "9",
}


class Abbreviations:
    """Folded abbreviation -> the folded expansions it may stand for."""

    def __init__(self, table: Mapping[str, Sequence[Expansion]]) -> None:
        self._table = dict(table)
        self._keys = frozenset(self._table)
        self._single = {key: found[0] for key, found in self._table.items() if len(found) == 1}
        self._several = frozenset(key for key, found in self._table.items() if len(found) > 1)
        # One-deletion index of the longer abbreviations, so "Bgry." still reads as "Brgy.".
        self._deletes: dict[str, set[str]] = {}
        for key in self._table:
            if len(key) >= MIN_TYPO_KEY and key.isalpha():
                for deleted in {key[:i] + key[i + 1 :] for i in range(len(key))} | {key}:
                    self._deletes.setdefault(deleted, set()).add(key)

    @classmethod
    def build(
        cls, extra: Mapping[str, str | Sequence[str]] | None = None, *, defaults: bool = True
    ) -> Abbreviations:
        """The default table, extended (and overridden key by key) by ``extra``.

        An entry mapped to an empty list removes that abbreviation.
        """
        raw: dict[str, str | Sequence[str]] = dict(DEFAULT_ABBREVIATIONS) if defaults else {}
        for key, value in (extra or {}).items():
            raw = {k: v for k, v in raw.items() if _key(k) != _key(key)}
            raw[key] = value
        table: dict[str, list[Expansion]] = {}
        for key, value in raw.items():
            folded = _key(key)
            options = [value] if isinstance(value, str) else list(value)
            expansions = [tuple(words(option)) for option in options]
            expansions = [e for e in expansions if e and e != (folded,)]
            if expansions:
                table[folded] = list(dict.fromkeys(expansions))
        return cls(table)

    def expand(self, word: str) -> Sequence[Expansion] | None:
        """The expansions of a folded word, or None when it is not an abbreviation."""
        return self._table.get(word)

    def near(self, word: str) -> list[str]:
        """Abbreviations one edit (OSA) away from ``word`` (a typo in an abbreviation)."""
        if len(word) < MIN_TYPO_KEY - 1 or not word.isalpha() or word in self._table:
            return []
        keys: set[str] = set(self._deletes.get(word, ()))
        for i in range(len(word)):
            keys.update(self._deletes.get(word[:i] + word[i + 1 :], ()))
        return [k for k in keys if OSA.distance(word, k, score_cutoff=1) == 1]

    def any_of(self, words: Iterable[str]) -> bool:
        """Whether any of ``words`` is an abbreviation."""
        return not self._keys.isdisjoint(words)

    def readings(self, words: Sequence[str], limit: int) -> list[Expansion]:
        """The word sequences ``words`` may stand for, at most ``limit``, in a fixed order: each
        abbreviation read as its first expansion first ("St" street, then saint)."""
        single = self._single
        if self._several.isdisjoint(words):
            out: list[str] = []
            for word in words:
                expansion = single.get(word)
                if expansion is None:
                    out.append(word)
                else:
                    out += expansion
            return [tuple(out)]
        options = [self._table.get(word) or [(word,)] for word in words]
        found: dict[Expansion, None] = {}
        for combination in itertools.islice(itertools.product(*options), limit):
            found[tuple(part for group in combination for part in group)] = None
        return list(found)

    def __contains__(self, word: object) -> bool:
        return word in self._table

    def __len__(self) -> int:
        return len(self._table)


def _key(abbreviation: str) -> str:
    folded = words(abbreviation)
    if len(folded) != 1:
        raise ValueError(
            f"abbreviation {abbreviation!r} must be one word (letters or digits, dots allowed)"
        )
    return folded[0]
