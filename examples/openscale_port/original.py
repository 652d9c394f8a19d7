"""German credit risk, monitored in IBM Watson OpenScale's Python client shapes: set the datamart up, bind a custom
engine, subscribe its model, store payload records in every form porting users have (the older client's
PayloadRecord, the newer client's keywords, its body dicts and data_sets.store_records, a WML v4 body, a pandas
DataFrame), store feedback rows (as lists, and as CSV text), count both and read them back.

examples/openscale_port/original.py is the script as written for OpenScale (never run here); ported.py is the same
script on stream-logger, run by tests/integration/test_openscale_port.py. The two differ only in their import lines
and their credentials (tests/unit/test_openscale_port_example.py checks it). Run it on the dev stack with
``python examples/openscale_port/ported.py``; it prints the counts and the rows read back as JSON on its last line.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pandas as pd
from ibm_ai_openscale import APIClient
from ibm_ai_openscale.engines import CustomMachineLearningAsset, CustomMachineLearningInstance
from ibm_ai_openscale.supporting_classes import PayloadRecord
from ibm_ai_openscale.supporting_classes.enums import InputDataType, ProblemType

CREDENTIALS = {
    "instance_guid": "00000000-0000-0000-0000-000000000000",
    "apikey": "<your IBM Cloud API key>",
    "url": "https://api.aiopenscale.cloud.ibm.com",
}
DB_CREDENTIALS = {
    "db_type": "postgresql",
    "uri": "postgres://admin:<password>@<host>.databases.appdomain.cloud:31324/ibmclouddb",
}
DB_SCHEMA = "data_mart"

SUBSCRIPTION_ID = "german_credit_custom"
FEATURES = ["CheckingStatus", "LoanDuration", "CreditHistory", "LoanPurpose", "LoanAmount", "Sex", "Age", "Telephone"]
CATEGORICAL = ["CheckingStatus", "CreditHistory", "LoanPurpose", "Sex", "Telephone"]
APPLICANTS = [
    ["0_to_200", 31, "credits_paid_to_date", "other", 1889, "female", 32, "none"],
    ["less_0", 18, "credits_paid_to_date", "car_new", 462, "female", 37, "none"],
    ["less_0", 15, "prior_payments_delayed", "furniture", 250, "male", 28, "yes"],
    ["0_to_200", 28, "credits_paid_to_date", "retraining", 5096, "male", 44, "none"],
    ["no_checking", 28, "outstanding_credit", "appliances", 6235, "male", 57, "yes"],
    ["no_checking", 32, "outstanding_credit", "business", 9604, "female", 57, "yes"],
    ["no_checking", 9, "prior_payments_delayed", "car_used", 1032, "male", 41, "none"],
    ["greater_200", 4, "all_credits_paid_back", "radio_tv", 1440, "female", 19, "none"],
    ["less_0", 45, "prior_payments_delayed", "vacation", 11676, "male", 74, "yes"],
    ["0_to_200", 12, "credits_paid_to_date", "education", 2120, "female", 25, "none"],
]
LABELS = ["No Risk", "No Risk", "Risk", "No Risk", "Risk", "Risk", "No Risk", "No Risk", "Risk", "No Risk"]
WHEN = datetime(2025, 1, 15, 9, 30, tzinfo=UTC)


def score(rows: list[list[object]]) -> dict[str, object]:
    """The custom engine's response: the request's fields echoed, then the prediction and its probabilities."""
    values = []
    for row in rows:
        checking, duration, history, _, amount, _, age, _ = row
        risk = 0.2 + 0.01 * int(duration) + 0.00002 * int(amount) - 0.004 * (int(age) - 19)
        risk += {"less_0": 0.25, "0_to_200": 0.1}.get(str(checking), -0.1)
        risk += 0.15 if history in ("prior_payments_delayed", "outstanding_credit") else 0.0
        risk = round(min(max(risk, 0.01), 0.99), 4)
        values.append([*row, "Risk" if risk >= 0.5 else "No Risk", [round(1 - risk, 4), risk]])
    return {"fields": [*FEATURES, "prediction", "probability"], "values": values}


def request(rows: list[list[object]]) -> dict[str, object]:
    return {"fields": FEATURES, "values": rows}


def main() -> None:
    client = APIClient(CREDENTIALS)
    client.data_mart.setup(db_credentials=DB_CREDENTIALS, schema=DB_SCHEMA)

    binding_uid = client.data_mart.bindings.add("German credit engine", CustomMachineLearningInstance())
    asset = CustomMachineLearningAsset(
        source_uid=SUBSCRIPTION_ID,
        binding_uid=binding_uid,
        problem_type=ProblemType.BINARY_CLASSIFICATION,
        input_data_type=InputDataType.STRUCTURED,
        label_column="Risk",
        prediction_column="prediction",
        probability_column="probability",
        feature_columns=FEATURES,
        categorical_columns=CATEGORICAL,
    )
    subscription = client.data_mart.subscriptions.add(asset, deployment_uids=["german-credit-v1"])
    subscription_uid = subscription.uid
    subscription = client.data_mart.subscriptions.get(subscription_uid)
    assert subscription_uid in client.data_mart.subscriptions.get_uids()

    # The older client's PayloadRecord, positionally: two applicants scored in one call.
    rows = APPLICANTS[0:2]
    subscription.payload_logging.store(
        records=[PayloadRecord(request(rows), score(rows), "gc-port-0", WHEN, 18)], deployment_id="german-credit-v1"
    )
    # The newer client's keywords.
    rows = APPLICANTS[2:4]
    record = PayloadRecord(
        request=request(rows),
        response=score(rows),
        scoring_id="gc-port-2",
        scoring_timestamp=datetime.utcnow(),
        response_time=7,
        asset_revision="2026-01",
        multiple_records=True,
        user_id="analyst",
    )
    subscription.payload_logging.store(records=[record])
    # Plain dicts, as the newer client's request body holds them.
    rows = APPLICANTS[4:5]
    subscription.payload_logging.store(
        records=[{"request": request(rows), "response": score(rows), "scoring_id": "gc-port-4", "response_time": 5}]
    )
    # The newer client's data_sets.store_records: the data set is the subscription.
    first, second = APPLICANTS[5:6], APPLICANTS[6:7]
    client.data_sets.store_records(
        data_set_id=subscription_uid,
        request_body=[
            PayloadRecord(request=request(first), response=score(first), scoring_id="gc-port-5").to_json(),
            PayloadRecord(request=request(second), response=score(second), scoring_id="gc-port-6", response_time=4),
        ],
    )
    # A WML v4 body, as a Watson Machine Learning deployment takes and gives it.
    rows = APPLICANTS[7:8]
    subscription.payload_logging.store(
        records=[
            PayloadRecord(
                request={"input_data": [request(rows)]},
                response={"predictions": [score(rows)]},
                scoring_id="gc-port-7",
                response_time=9,
            )
        ]
    )
    # A DataFrame scored by a notebook's model.
    rows = APPLICANTS[8:10]
    frame = pd.DataFrame(rows, columns=FEATURES)
    scored = score(rows)
    subscription.payload_logging.store(
        records=[
            PayloadRecord(
                request=frame,
                response=pd.DataFrame(scored["values"], columns=scored["fields"]),
                scoring_id="gc-port-8",
                response_time=11,
            )
        ]
    )

    # Feedback: the ground truth that came later, as rows (the features, then the label)...
    labelled = [[*row, label] for row, label in zip(APPLICANTS, LABELS, strict=True)]
    subscription.feedback_logging.store(labelled[:6])
    # ...and as CSV text with a header line.
    csv_text = "\n".join(",".join(map(str, row)) for row in [[*FEATURES, "Risk"], *labelled[6:]])
    subscription.feedback_logging.store(csv_text, data_header=True)

    count = subscription.payload_logging.get_records_count()
    feedback_count = subscription.feedback_logging.get_records_count()
    print(f"{count} payload records, {feedback_count} feedback records")
    subscription.payload_logging.show_table(limit=5)
    table = subscription.payload_logging.get_table_content()
    print(table[["scoring_id", "Age", "Sex", "prediction"]].head(10))
    subscription.feedback_logging.show_table()
    content = subscription.payload_logging.get_table_content(format="python", limit=None)
    feedback = subscription.feedback_logging.get_table_content(format="python")
    print(
        json.dumps(
            {"count": count, "payload": content, "feedback_count": feedback_count, "feedback": feedback}, default=str
        )
    )


if __name__ == "__main__":
    main()
