"""Everyday English words, so that a correctly spelled word is not "corrected" into an entity.

A spell checker only corrects non-words: "travel" is not a typo of the category "Gravel", nor
"point" of "Paint", nor "number" of "Lumber". A question word found here (or an inflection of
one) may still be part of a longer entity name, but it is never the sole evidence for a typo or a
one-word partial name.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Final

_TEXT = """
a about above across act action actual actually add added address after again against age ago
agree ahead aim air all allow almost alone along already also although always am among amount an
analysis and annual another answer any anyone anything anyway apart appear apply approve april are
area around arrive art article as ask at attention august available average avoid away back bad
balance bank base basic basis be bear beat because become bed been before began begin behind being
believe below best better between beyond big bill bit black block blue board body book both bottom
box break bring brought budget build building business busy but buy by call came can cannot capital
car card care carry case cash cause center central certain chance change charge chart cheap check
child choice choose city claim class clean clear client close closed code cold collect come coming
common company compare complete concern condition consider contact contain content continue control
copy correct cost could count country couple course cover create credit current customer cut daily
dark data date day days deal dear death debt december decide decision deep define degree deliver
demand department depend describe design detail develop did die difference different direct
director do document does doing done door double doubt down draft draw due during each early east
easy eat economic effect effort either else employee end enough enter entire entry equal error
especially estimate even evening event ever every everyone everything exact example except expect
expense expensive experience explain extra face fact fail fall false family far fast february fee
feel few field figure file fill final finance financial find fine finish fire first fit five fix
flat floor flow follow food for force forecast form former forward four free friday from front full
fund future gain general get give given go goal going gone good got great green gross ground group
grow growth guess had half hand happen happened hard has have he head hear heard held help her here
high highest him his history hit hold home hope hour hours house how however huge human hundred
idea if important in include income increase indeed information inside instead interest into invoice
is issue it item its january job join july june just keep key kind knew know known label lack land
large last late later latest least leave left legal less let letter level life light like likely
limit line list little live load local long look lose loss lost lot low lower lowest made main
major make manager many march mark market match matter may maybe me mean meaning meant measure meet
member mention method middle might million mind minute miss model moment monday money month monthly
more morning most move much must my name near nearly need net never new next nice night nine no none
nor normal north not note nothing notice november now number of off offer office often oh ok okay
old on once one only open operation option or order other others our out over overall owe own page
paid part particular party pass past pay payment people per percent perhaps period person pick
place plan play please plus point policy position possible post pound power present pretty previous
price print private probably problem process produce product profit program project provide public
pull purchase purpose put quarter quarterly question quick quickly quite raise range rate rather
reach read ready real really reason receive recent record red reduce regard region regular related
remain remember report request require rest result return review right rise risk room round rule
run said sale sales same save saw say says second section see seem seen sell send sense sent
september series serve service set seven several shall share she short should show side sign similar
simple since single site six size small so sold some someone something sometimes soon sorry sort
source south space speak special spend spending spent staff stage stand standard start state status
stay step still stock stop store story street strong study subject such suggest sum summary sunday
supply support sure system table take talk target team tell ten term terms test than thank thanks
that the their them then there these they thing things think third this those though thought
thousand
three through thursday time to today together told too took top total toward track trade travel
true try tuesday turn two type under understand unit until up update upon us use used user usual
usually value various very view wait want was watch water way we wednesday week weekly well went
were west what whatever when where whether which while white who whole whom whose why will with
within without word work worked worker world worth would write wrong year yearly yes yesterday yet
you your
accept account accounts accrued advance advanced agreement allocate allocated allocation also
amounts
approval approved asked audit balance bills billed booked breakdown budgets calculate calculated
cancel cheque checked claims closing compute computed contract contracts costs daily delayed
deposit deposits details difference discount earned entries expected expenditure expenditures
figures filed funds grand highest incurred invoices items latest ledger lowest median minus month's
net outstanding overdue owed paid payable payables payroll pending percentage pesos php planned
purchases receipts received receivable record records refund reimbursement remaining remittance
reported reports revenue sum summarize summary supplier suppliers tally totals transaction
transactions transfer transferred unpaid variance vendor vendors versus vs week's worth ytd
again being could did does doing done had has having may might must shall should will would
anything everything nothing something how's what's who's where's when's why's
compared comparing biggest smallest largest top most least lately recently currently so-far
show tell give list find get fetch display break explain summarise summarize
"""

COMMON_WORDS: Final[frozenset[str]] = frozenset(w.replace("'", "") for w in _TEXT.split())


@lru_cache(maxsize=16384)
def is_common(word: str) -> bool:
    """True for a folded everyday word or a regular inflection of one (plural, -ed, -ing)."""
    if word in COMMON_WORDS:
        return True
    return any(stem in COMMON_WORDS for stem in _stems(word))


def _stems(word: str) -> list[str]:
    stems: list[str] = []
    if word.endswith("ies") and len(word) > 4:
        stems.append(word[:-3] + "y")
    if word.endswith("es") and len(word) > 3:
        stems.append(word[:-2])
    if word.endswith("s") and len(word) > 3:
        stems.append(word[:-1])
    if word.endswith("ied") and len(word) > 4:
        stems.append(word[:-3] + "y")
    if word.endswith("ed") and len(word) > 4:
        stems += [word[:-2], word[:-1]]
        if len(word) > 5 and word[-3] == word[-4]:
            stems.append(word[:-3])
    if word.endswith("ing") and len(word) > 5:
        stems += [word[:-3], word[:-3] + "e"]
        if word[-4] == word[-5]:
            stems.append(word[:-4])
    if word.endswith("er") and len(word) > 4:
        stems += [word[:-2], word[:-1]]
    if word.endswith("ly") and len(word) > 4:
        stems.append(word[:-2])
    return stems
