"""The pieces of ``stream-logger demo``: synthetic German-credit applicants, a deterministic scoring model, the
subscription declaration, deliberately malformed messages, and the closing summary read back from the datamart.
"""

from __future__ import annotations

from .applicants import FIELDS, ApplicantGenerator
from .malformed import MalformedMessage, malformed_messages
from .model import LABELS, NO_RISK, RISK, score, score_applicant
from .subscription import SUBSCRIPTION_ID, subscription_declaration
from .summary import Summary, render, render_chart, summarize

__all__ = [
    "FIELDS",
    "LABELS",
    "NO_RISK",
    "RISK",
    "SUBSCRIPTION_ID",
    "ApplicantGenerator",
    "MalformedMessage",
    "Summary",
    "malformed_messages",
    "render",
    "render_chart",
    "score",
    "score_applicant",
    "subscription_declaration",
    "summarize",
]
