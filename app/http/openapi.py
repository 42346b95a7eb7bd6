"""OpenAPI for the generation endpoints. They read their body themselves (to bound and
parse it before any model sees it), so FastAPI cannot infer it: this declares the request
models and every error answer the endpoints really give, in OpenAI's envelope."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from app.protocol.openai import ChatCompletionRequest, CompletionRequest, ErrorEnvelope

_REF = "#/components/schemas/{model}"
ERRORS = {
    400: "Invalid JSON, a schema violation, a vLLM extension this server does not accept, or a "
         "prompt beyond the tier's context",
    401: "Missing or invalid API key",
    403: "The key may not use, or may not choose, this tier",
    404: "Unknown model",
    413: "Body over the server's limit",
    429: "Rate limit or budget; see Retry-After",
    503: "Overloaded or no tier could serve; see Retry-After",
}


def generation_route(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` + `responses` for a POST endpoint that takes `model` as JSON."""
    schema = {"$ref": _REF.format(model=model.__name__)}
    error = {"content": {"application/json": {"schema": {"$ref": _REF.format(model="ErrorEnvelope")}}}}
    return {
        "openapi_extra": {"requestBody": {"required": True,
                                          "content": {"application/json": {"schema": schema}}}},
        "responses": {status: {"description": text, **error} for status, text in ERRORS.items()},
    }


def add_component_schemas(spec: dict[str, Any]) -> dict[str, Any]:
    """Put the request and error models (and what they reference) into `components`."""
    components = spec.setdefault("components", {}).setdefault("schemas", {})
    for model in (ChatCompletionRequest, CompletionRequest, ErrorEnvelope):
        schema = model.model_json_schema(ref_template=_REF)
        components.update(schema.pop("$defs", {}))
        components[model.__name__] = schema
    return spec
