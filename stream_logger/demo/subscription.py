"""The demo's subscription: the declaration of the ``GermanCreditRiskModel`` deployment and its fields.

Every field has a role (``feature``, ``meta``, ``prediction``, ``probability``, ``target``) and a type
(``integer``, ``text``, ``float_array``, ...), which the datamart turns into the typed columns of the subscription's
payload table (the target's: of its feedback table).
"""

from __future__ import annotations

from typing import Any, Final

from .applicants import CATEGORIES, FIELDS, INTEGER_RANGES, META_FIELDS

__all__ = [
    "DEPLOYMENT_ID",
    "SUBSCRIPTION_ID",
    "TARGET",
    "subscription_declaration",
]

SUBSCRIPTION_ID: Final = "GermanCreditRiskModel"
DEPLOYMENT_ID: Final = "german-credit-risk-demo"
TARGET: Final = "Risk"
"""The ground truth's field (role ``target``): what became of the loan, ``Risk`` or ``No Risk``."""


def _feature_type(name: str) -> str:
    if name in INTEGER_RANGES:
        return "integer"
    if name in CATEGORIES:
        return "text"
    raise AssertionError(f"feature {name} has neither a value set nor a range")  # pragma: no cover


def subscription_declaration(
    subscription_id: str = SUBSCRIPTION_ID, deployment_id: str = DEPLOYMENT_ID, *, include_meta: bool = True
) -> dict[str, Any]:
    """The subscription declaration as a plain dict (JSON-serialisable).

    ``{"subscription_id", "deployment_id", "fields": [{"name", "role", "type"}, ...]}``: the 20 features in the
    reference order, the ``ApplicantRegion`` meta field (when ``include_meta``), then ``prediction`` (text) and
    ``probability`` (an array of floats, ``[P(No Risk), P(Risk)]``), and the target :data:`TARGET` (text), which
    the demo's delayed labels give.
    """
    fields: list[dict[str, str]] = [{"name": name, "role": "feature", "type": _feature_type(name)} for name in FIELDS]
    if include_meta:
        fields += [{"name": name, "role": "meta", "type": "text"} for name in META_FIELDS]
    fields += [
        {"name": "prediction", "role": "prediction", "type": "text"},
        {"name": "probability", "role": "probability", "type": "float_array"},
        {"name": TARGET, "role": "target", "type": "text"},
    ]
    return {"subscription_id": subscription_id, "deployment_id": deployment_id, "fields": fields}
