"""The callers let into a company's tabs, remembered so that they are let in again without a
lookup of the company's entry.

Users are only ever added to a company: the contract has no way to take one off. So a membership
seen once holds for good, and remembering it can never let in a caller the store would refuse. A
refusal is never remembered (``services/api/app.py``, ``check_member``). The memberships are kept
as text keys in a ``Recent``, which the collector never visits, the least recently used going
first once there are ``size``; one that went is looked up again when its caller comes back.
"""

from __future__ import annotations

from services.recent import Recent


class Members:
    def __init__(self, size: int) -> None:
        self._known: Recent[None] = Recent(size)

    def __len__(self) -> int:
        return len(self._known)

    def knows(self, agency_id: str, company_id: str, user_id: str) -> bool:
        key = _key(agency_id, company_id, user_id)
        if key not in self._known:
            return False
        self._known.put(key, None)  # used again: the last to go
        return True

    def admit(self, agency_id: str, company_id: str, user_id: str) -> None:
        self._known.put(_key(agency_id, company_id, user_id), None)


def _key(agency_id: str, company_id: str, user_id: str) -> str:
    # The ids come from a token's claims as well as from the path, and a claim may hold any
    # character: the representation of the tuple tells them apart whatever they hold.
    return repr((agency_id, company_id, user_id))
