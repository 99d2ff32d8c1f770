"""JSON responses from models already validated by the service, serialized once by pydantic.

Routes still declare their `response_model` (it documents the schema); returning a ready `Response` skips
FastAPI's second validation pass, which on a 100-row trial page costs as much as building it.
"""

from __future__ import annotations

from fastapi import Response
from pydantic import BaseModel


def json_response(content: BaseModel | bytes, status_code: int = 200) -> Response:
    body = content if isinstance(content, bytes) else content.model_dump_json().encode()
    return Response(body, status_code=status_code, media_type="application/json")
