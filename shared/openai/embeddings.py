"""POST /v1/embeddings: OpenAI's embeddings request, served by native textEmbedding calls.

`input` is one string or up to 256: the `texts` extension's fan-out (FM_MAX_CONCURRENCY threads, paced to
FM_EMBEDDING_RPS), where upstream's own OpenAI mode takes one string. `encoding_format` is `float`, or
`base64`: little-endian float32, 4 bytes a value, standard base64 with padding. The `openai` client asks
for base64 whenever its caller does not choose, and decodes it with array("f") or numpy float32
(openai/lib/_parsing/_embeddings.py). Token-id input, which LangChain's OpenAIEmbeddings sends by default,
is a 400 that says how to send text instead: upstream embeds text, and its tokens are not tiktoken's.
"""

from __future__ import annotations

import base64
import struct
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, field_validator

from shared import errors
from shared.native import services
from shared.native.models import MAX_SYNC_TEXTS, NonEmptyStr, StrictStr, model_uri_pattern
from shared.openai import catalog
from shared.openai.models import OpenAIBody
from shared.responses import Reply

if TYPE_CHECKING:
    from shared.runtime import Invocation

TOKEN_IDS = ("token ids are not accepted, only text: send strings. LangChain's OpenAIEmbeddings sends token "
             "ids unless you set check_embedding_ctx_length=False")


class EmbeddingsRequest(OpenAIBody):
    model: NonEmptyStr = Field(json_schema_extra={"pattern": model_uri_pattern("emb|gpt")})
    input: NonEmptyStr | Annotated[list[NonEmptyStr], Field(min_length=1, max_length=MAX_SYNC_TEXTS)]
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: Annotated[int, Field(strict=True, gt=0)] | None = None
    user: StrictStr | None = None  # accepted and ignored

    @field_validator("input", mode="before")
    @classmethod
    def _texts(cls, value: Any) -> Any:
        """The input as a list of texts; anything else is refused here, with a message that names the item."""
        if isinstance(value, str):
            return [_text(value, "")]
        if not isinstance(value, list):
            raise ValueError("must be a string or a list of strings")
        if not value:
            raise ValueError("must have at least 1 item")
        if all(isinstance(item, int) and not isinstance(item, bool) for item in value) or any(
                isinstance(item, list) for item in value):
            raise ValueError(TOKEN_IDS)
        if len(value) > MAX_SYNC_TEXTS:
            raise ValueError(f"must have at most {MAX_SYNC_TEXTS} items (send more in several requests, or "
                             "use POST /foundationModels/v1/textEmbeddingAsync for up to 10,000)")
        return [_text(item, f"[{index}]") for index, item in enumerate(value)]

    @property
    def texts(self) -> list[str]:
        return self.input if isinstance(self.input, list) else [self.input]


def _text(item: Any, where: str) -> str:
    prefix = f"@{where}: " if where else ""
    if not isinstance(item, str):
        raise ValueError(f"{prefix}must be a string")
    if not item:
        raise ValueError(f"{prefix}must not be empty")
    return item


def create(request: EmbeddingsRequest, inv: Invocation) -> Reply:
    """Embed every input text (in parallel, paced) and answer in OpenAI's list shape, in input order."""
    model_uri = catalog.resolve(request.model, "emb", inv.settings, inv.policy)
    inv.log_fields["model"] = model_uri
    texts = request.texts
    inv.admit({"texts": texts}, "embedding", model_uri)  # a key's budget and limits (nothing without them)
    results = services.fan_out(lambda text: services.embed_one(model_uri, text, request.dimensions, inv), texts,
                               inv.settings.max_concurrency)
    tokens = sum(_count(result.get("numTokens")) for result in results)
    inv.log_fields.update(texts=len(texts), input_tokens=tokens)
    encode = _base64 if request.encoding_format == "base64" else _floats
    data = [{"object": "embedding", "index": index, "embedding": encode(result["embedding"])}
            for index, result in enumerate(results)]
    return Reply({"object": "list", "data": data, "model": model_uri,
                  "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


def _floats(vector: list[Any]) -> list[float]:
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vector):
        raise errors.UpstreamError("upstream embedding holds a value that is not a number")
    return vector


def _base64(vector: list[Any]) -> str:
    """float32 little-endian, no header, standard base64: [0.5, -1.25, 3.0] -> "AAAAPwAAoL8AAEBA"."""
    try:
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
    except (struct.error, TypeError, OverflowError):
        raise errors.UpstreamError("upstream embedding holds a value that is not a number") from None


def _count(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
