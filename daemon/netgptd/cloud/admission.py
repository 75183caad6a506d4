"""Who may ask, and how often: signature check, per-requester token buckets (pure; time comes in).

:class:`Admission` says for each well-formed request whether it is taken
('') or why not: a reason of :data:`netgptd.cloud.signing.REFUSED`, or
``rate_limited``. Signed requests are checked against the configured keys;
an unsigned one is taken only when it is a question and ``unsigned_questions``
is on (all of them share the ``anonymous`` bucket). Each requester has its own
token bucket: ``burst`` requests at once, then ``rate`` a second.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from netgptd.cloud.requests import QUESTION, Request
from netgptd.cloud.signing import Verifier

ANONYMOUS = "anonymous"  # the bucket unsigned questions share
RATE_LIMITED = "rate_limited"


@dataclass
class TokenBucket:
    """``burst`` tokens, refilled at ``rate`` a second; each request takes one."""

    rate: float
    burst: float
    tokens: float = -1.0  # full on first use
    stamp: float = 0.0

    def take(self, now: float) -> bool:
        if self.tokens < 0:
            self.tokens, self.stamp = self.burst, now
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.stamp) * self.rate)
        self.stamp = max(self.stamp, now)
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class Admission:
    def __init__(self, keys: Mapping[str, bytes], window_s: float, rate: float, burst: int,
                 unsigned_questions: bool) -> None:  # fmt: skip
        self.verifier = Verifier(keys, window_s)
        self.unsigned_questions = unsigned_questions
        self.buckets = {name: TokenBucket(rate, burst) for name in [*keys, ANONYMOUS]}

    def admit(self, request: Request, now: float) -> str:
        """'' when ``request`` is taken (its nonce is then remembered), else the reason it is not."""
        if request.signed:
            reason = self.verifier.check(request.fields, now)
            if reason:
                return reason
            name = request.requester
        elif request.kind == QUESTION and self.unsigned_questions:
            name = ANONYMOUS
        else:
            return "unsigned"
        if not self.buckets[name].take(now):
            return RATE_LIMITED
        if request.signed:
            self.verifier.remember(request.fields, now)
        return ""
