"""The error answers the API's routes declare in the OpenAPI schema: one body shape
(`{"detail": ...}`) and what each status means, shared by every router so the schema names
every status a client can get (401, 404, 413, 422...) and the body it carries."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Problem(BaseModel):
    """The body of every error answer."""

    detail: str | list[dict[str, Any]] = Field(
        description="What is wrong, naming the field or the limit when there is one: a "
        "sentence, or (a request that does not match the schema) one entry per problem "
        "with its location (`loc`) and message (`msg`)."
    )


def _error(description: str) -> dict[str, Any]:
    # The JSON content is named explicitly: a route answering HTML (a report page) still
    # answers its errors in JSON.
    json_body = {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    return {"model": Problem, "description": description, "content": json_body}


# Every API router declares these (`APIRouter(..., responses=ERRORS)`).
ERRORS: dict[int | str, dict[str, Any]] = {
    400: _error("The body cannot be read (not JSON, or not UTF-8)."),
    401: _error(
        "No credential, an unknown or revoked one, or the wrong kind for this route (a "
        "partner key on an agent route or the reverse); answered with "
        "`WWW-Authenticate: Bearer` and the reason."
    ),
    403: _error(
        "The caller's role lacks the right for this route (a technician or customer viewer; "
        "collector/authz.py); the detail names the right."
    ),
    404: _error("No such object for this caller: it does not exist or another partner owns it."),
    409: _error("The object is not in a state that allows this (the detail says which)."),
    413: _error("The body is over the route's size limit; the detail names the limit."),
    422: _error("A field, parameter or item is invalid; the detail names it."),
    429: {
        **_error(
            "Throttled: too many failed authentications from this address, or too many "
            "requests for this partner key (`web.*` in the config); retry after "
            "`Retry-After` seconds."
        ),
        "headers": {
            "Retry-After": {
                "description": "Seconds to wait before the next request.",
                "schema": {"type": "integer", "minimum": 1},
            }
        },
    },
}

# `/readyz`: the database does not answer or its schema is not the newest.
READYZ: dict[int | str, dict[str, Any]] = {
    503: {
        "description": "Not ready: the database does not answer or is not migrated.",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {"status": {"type": "string"}, "reason": {"type": "string"}},
                }
            }
        },
    }
}

# `/metrics` (with `response_class=PlainTextResponse`, the Prometheus text format): a scrape
# without the credential it needs, or with shard parameters that do not go together.
METRICS: dict[int | str, dict[str, Any]] = {401: ERRORS[401], 422: ERRORS[422], 429: ERRORS[429]}

# Routes taking `If-Match` (a profile's version).
PRECONDITION: dict[int | str, dict[str, Any]] = {
    412: _error("`If-Match` does not name the current version: read it again.")
}
