"""Turning text into comparable words: the one normalisation both the vocabulary and questions use.

Case, accents, punctuation, quotes and spacing carry no meaning for matching, so a word is folded
(NFKD, combining marks dropped, casefolded, apostrophes removed) and text is cut into words at
anything that is not a letter or digit. Letters and digits are separate words ("Ph2" is "ph",
"2"), so "Phase 2", "Ph 2" and "Ph2" line up. Every word keeps the character span it came from,
so a match can be reported as a slice of the original text.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

# A word: letters/digits (and combining marks, for decomposed accents), possibly joined by
# apostrophes ("Luke's" is one word). Underscores, hyphens, dots, quotes... separate words.
_LETTER = r"(?:[^\W_]|[\u0300-\u036f])"
_WORD = re.compile(rf"{_LETTER}+(?:['\u2019\u2018`\u00b4]{_LETTER}+)*|&")
_PIECE = re.compile(r"\d+|\D+")
_MIXED = re.compile(r"\d\D|\D\d")  # letters and digits side by side: "Ph2", "Q1"
_APOSTROPHES = str.maketrans("", "", "'\u2019\u2018`\u00b4")
# ASCII text without apostrophes or "&": its folded words are its lower-cased letter and digit
# runs, exactly what the general path below finds.
_ASCII_SPECIAL = re.compile(r"['`&]")
_ASCII_PIECE = re.compile(r"[a-z]+|[0-9]+")


@dataclass(frozen=True, slots=True)
class Token:
    """One folded word of a text and where it sits in the original text (end exclusive).

    ``word_start``/``word_end`` say whether the token begins/ends a whole written word: a match
    must not begin or end in the middle of one ("Ph" inside "Ph2" is fine, "Bay" in "Bayside" not).
    """

    text: str
    start: int
    end: int
    word_start: bool
    word_end: bool
    dotted: bool = False  # followed by a period, as abbreviations are ("Emerg.")
    capital: bool = False  # written with a capital first letter, as names are


@lru_cache(maxsize=65536)
def fold(word: str) -> str:
    """The comparable form of one word: lower case, no accents, no apostrophes."""
    if word.isascii():
        return word.lower().translate(_APOSTROPHES)
    decomposed = unicodedata.normalize("NFKD", word)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return stripped.casefold().translate(_APOSTROPHES)


def tokenize(text: str) -> list[Token]:
    """The folded words of ``text`` with their spans, letters and digits apart."""
    tokens: list[Token] = []
    for match in _WORD.finditer(text):
        word = match.group()
        base = match.start()
        if word == "&":  # "Sand & Gravel" is "Sand and Gravel"
            tokens.append(Token("and", base, match.end(), True, True))
            continue
        pieces = list(_PIECE.finditer(word)) if _MIXED.search(word) else None
        if pieces is None or len(pieces) == 1:
            folded = fold(word)
            if folded:
                end = match.end()
                tokens.append(
                    Token(
                        folded, base, end, True, True, text[end : end + 1] == ".", word[0].isupper()
                    )
                )
            continue
        last = len(pieces) - 1
        for index, piece in enumerate(pieces):
            folded = fold(piece.group())
            if folded:
                tokens.append(
                    Token(
                        folded,
                        base + piece.start(),
                        base + piece.end(),
                        index == 0,
                        index == last,
                        index == last and text[match.end() : match.end() + 1] == ".",
                        piece.group()[0].isupper(),
                    )
                )
    return tokens


_PIECES: dict[str, tuple[str, ...]] = {}
"""Written word -> its folded words (words repeat a lot across a vocabulary)."""
_PIECES_SIZE = 50_000


def words(text: str) -> list[str]:
    """Just the folded words of ``text`` (the vocabulary side: no spans, so faster)."""
    if text.isascii() and not _ASCII_SPECIAL.search(text):  # most terms: one regex call
        return _ASCII_PIECE.findall(text.lower())
    out: list[str] = []
    cache = _PIECES
    for word in _WORD.findall(text):
        pieces = cache.get(word)
        if pieces is None:
            pieces = _pieces(word)
            if len(cache) >= _PIECES_SIZE:
                cache.clear()
            cache[word] = pieces
        out += pieces
    return out


def _pieces(word: str) -> tuple[str, ...]:
    if word == "&":
        return ("and",)
    if _MIXED.search(word):
        return tuple(folded for piece in _PIECE.findall(word) if (folded := fold(piece)))
    folded = fold(word)
    return (folded,) if folded else ()
