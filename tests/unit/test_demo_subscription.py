"""The demo's subscription declaration."""

from __future__ import annotations

import json

from stream_logger.demo.applicants import FIELDS, INTEGER_RANGES
from stream_logger.demo.subscription import SUBSCRIPTION_ID, TARGET, subscription_declaration


def test_declares_every_field_with_role_and_type() -> None:
    declaration = subscription_declaration()
    assert declaration["subscription_id"] == SUBSCRIPTION_ID == "GermanCreditRiskModel"
    fields = declaration["fields"]
    features = [f for f in fields if f["role"] == "feature"]
    assert [f["name"] for f in features] == list(FIELDS)
    for f in features:
        assert f["type"] == ("integer" if f["name"] in INTEGER_RANGES else "text")
    by_name = {f["name"]: f for f in fields}
    assert by_name["prediction"] == {"name": "prediction", "role": "prediction", "type": "text"}
    assert by_name["probability"] == {"name": "probability", "role": "probability", "type": "float_array"}
    assert by_name["ApplicantRegion"]["role"] == "meta"
    assert by_name[TARGET] == {"name": "Risk", "role": "target", "type": "text"}  # the labels' field
    assert json.loads(json.dumps(declaration)) == declaration


def test_meta_is_optional() -> None:
    fields = subscription_declaration(include_meta=False)["fields"]
    assert all(f["role"] != "meta" for f in fields)
    assert len(fields) == 23
