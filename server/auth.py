"""Bearer tokens with roles: annotator (datasets), operator (training, models), client (detection)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import grpc

log = logging.getLogger("artdet.auth")

ROLES = ("annotator", "operator", "client", "admin")
SERVICE_ROLES = {
    "artdet.v1.DatasetService": "annotator",
    "artdet.v1.TrainingService": "operator",
    "artdet.v1.ModelService": "operator",
    "artdet.v1.DetectionService": "client",
}
TOKENS_ENV = "ARTDET_TOKENS"


def parse_tokens(text: str) -> dict[str, set[str]]:
    """`TOKEN=role[,role];TOKEN=role` (environment) or JSON {"TOKEN": ["role", ...]} (file)."""
    text = text.strip()
    if not text:
        return {}
    if text.startswith("{"):
        raw = json.loads(text)
        tokens = {token: set([roles] if isinstance(roles, str) else roles) for token, roles in raw.items()}
    else:
        tokens = {}
        for entry in filter(None, (e.strip() for e in text.split(";"))):
            token, _, roles = entry.partition("=")
            tokens[token.strip()] = {r.strip() for r in roles.split(",") if r.strip()}
    for token, roles in tokens.items():
        unknown = roles - set(ROLES)
        if not token or not roles or unknown:
            raise ValueError(f"tokens: entry for {token[:4]!r}... needs roles from {ROLES}, got {sorted(roles)}")
    return tokens


def load_tokens(path: str | None = None) -> dict[str, set[str]]:
    tokens = parse_tokens(os.environ.get(TOKENS_ENV, ""))
    if path:
        tokens.update(parse_tokens(Path(path).read_text()))
    return tokens


def _denied(handler: grpc.RpcMethodHandler, code: grpc.StatusCode, message: str) -> grpc.RpcMethodHandler:
    def abort(_request, context):
        context.abort(code, message)

    kinds = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }
    make = kinds[(handler.request_streaming, handler.response_streaming)]
    return make(abort, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)


class AuthInterceptor(grpc.ServerInterceptor):
    def __init__(self, tokens: dict[str, set[str]]):
        self.tokens = tokens
        if not tokens:
            log.warning("*** AUTHENTICATION IS OFF: no tokens configured (--tokens FILE or %s); "
                        "anyone who can reach this port can upload, train and detect ***", TOKENS_ENV)

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        service = handler_call_details.method.lstrip("/").split("/")[0]
        required = SERVICE_ROLES.get(service)
        if handler is None or required is None or not self.tokens:
            return handler
        metadata = dict(handler_call_details.invocation_metadata or ())
        header = metadata.get("authorization", "")
        if not header.lower().startswith("bearer "):
            return _denied(handler, grpc.StatusCode.UNAUTHENTICATED,
                           "authorization: missing 'Bearer <token>' metadata")
        roles = self.tokens.get(header[7:].strip())
        if roles is None:
            return _denied(handler, grpc.StatusCode.UNAUTHENTICATED, "authorization: unknown token")
        if required not in roles and "admin" not in roles:
            return _denied(handler, grpc.StatusCode.PERMISSION_DENIED,
                           f"authorization: {service} needs role {required!r}; this token has {sorted(roles)}")
        return handler
