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
    "artdet.v1.DatasetService": {"annotator"},
    "artdet.v1.TrainingService": {"operator"},
    "artdet.v1.ModelService": {"operator"},
    "artdet.v1.DetectionService": {"client"},
    "artdet.v1.ServerService": set(ROLES),
}
# The museum app runs its model on the device: a client token may also read the *active* model version
# (the servicer narrows these calls to it); everything else of ModelService stays the operator's.
ACTIVE_MODEL_READS = {"/artdet.v1.ModelService/ListModels", "/artdet.v1.ModelService/GetModel",
                      "/artdet.v1.ModelService/DownloadModel"}
# Operators train on datasets: they may read them, not change them.
DATASET_READS = {"/artdet.v1.DatasetService/ListDatasets", "/artdet.v1.DatasetService/GetDataset",
                 "/artdet.v1.DatasetService/ListDatasetImages", "/artdet.v1.DatasetService/GetDatasetImage"}
# Annotators ask which images to label next.
ANNOTATOR_SUGGESTIONS = {"/artdet.v1.DetectionService/SuggestImages"}
TOKENS_ENV = "ARTDET_TOKENS"


def roles_allowed(method: str) -> set[str]:
    """Roles that may call `method` ("/package.Service/Method"); empty for services outside the role table."""
    required = SERVICE_ROLES.get(method.lstrip("/").split("/")[0])
    if required is None:
        return set()
    return (required | {"admin"} | ({"client"} if method in ACTIVE_MODEL_READS else set())
            | ({"operator"} if method in DATASET_READS else set())
            | ({"annotator"} if method in ANNOTATOR_SUGGESTIONS else set()))


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
            log.warning("*** AUTHENTICATION IS OFF: no tokens configured (--tokens-file FILE or %s); "
                        "anyone who can reach this port can upload, train and detect ***", TOKENS_ENV)

    def roles_of(self, metadata) -> set[str] | None:
        """The roles of the bearer token in `metadata`; None when unknown or missing. Auth off: every role."""
        if not self.tokens:
            return set(ROLES)
        header = dict(metadata or ()).get("authorization", "")
        if not header.lower().startswith("bearer "):
            return None
        return self.tokens.get(header[7:].strip())

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        allowed = roles_allowed(method)
        if handler is None or not allowed or not self.tokens:
            return handler
        metadata = dict(handler_call_details.invocation_metadata or ())
        if not metadata.get("authorization", "").lower().startswith("bearer "):
            return _denied(handler, grpc.StatusCode.UNAUTHENTICATED,
                           "authorization: missing 'Bearer <token>' metadata (pass --token or set ARTDET_TOKEN)")
        roles = self.roles_of(handler_call_details.invocation_metadata)
        if roles is None:
            return _denied(handler, grpc.StatusCode.UNAUTHENTICATED, "authorization: unknown token")
        if not roles & allowed:
            needed = " or ".join(repr(r) for r in sorted(allowed - {"admin"}))
            return _denied(handler, grpc.StatusCode.PERMISSION_DENIED,
                           f"authorization: {method.lstrip('/')} needs role {needed}; this token has {sorted(roles)}")
        return handler
