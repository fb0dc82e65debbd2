"""Classification function: few-shot (2-20 labels, optional samples), tuned classifiers,
fewShotTextClassificationAsync, and the classification queue's trigger."""

from typing import Any

from shared import runtime
from shared.native import services

OPERATIONS = {
    "fewShotTextClassification": services.classify_few_shot,
    "textClassification": services.classify_tuned,
    "fewShotTextClassificationAsync": "shared.jobs.operations:submit_classification",
}


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return runtime.serve("classification", OPERATIONS, event, context, jobs=("classification", "shared.jobs.worker:consume"))
