"""Classification function: few-shot (2-20 labels, optional samples) and tuned classifiers."""

from typing import Any

from shared import runtime, services

OPERATIONS = {
    "fewShotTextClassification": services.classify_few_shot,
    "textClassification": services.classify_tuned,
}


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return runtime.serve("classification", OPERATIONS, event, context)
