"""Request signatures, in Python.

Clients sign each request with a shared secret: the `X-Signature` header is the
lower-case hex HMAC-SHA256 of

    METHOD "\n" PATH[?QUERY] "\n" TIMESTAMP

where TIMESTAMP is the `X-Timestamp` header (Unix seconds). The plugin rejects,
with 401 and a JSON error, requests without the headers, with a timestamp
outside `max_skew_seconds` of the gateway's clock (replays of old captures) and
with a signature that does not match (forged or altered requests). Verified
requests carry the attribute `signature=verified`.

Config:
    secret:            the shared secret (required, at least 16 bytes)
    max_skew_seconds:  accepted clock difference, default 300
    signature_header:  default "x-signature"
    timestamp_header:  default "x-timestamp"
"""

import hashlib
import hmac
import json

# componentize-py bundles the modules imported while it builds the component;
# `hmac` imports `warnings` lazily on its pure-Python path, so import it here.
import warnings  # noqa: F401

import wit_world
from componentize_py_types import Err
from wit_world.imports import host, types

_settings = None


def _error(status: int, code: str, ctx: types.Context) -> types.RequestAction:
    body = json.dumps({"error": code, "request_id": ctx.request_id()}).encode()
    headers = [
        types.Header("content-type", b"application/json"),
        types.Header("www-authenticate", b'HMAC realm="gatehouse"'),
    ]
    return types.RequestAction_Respond(types.Response(status, headers, body))


class Settings:
    def __init__(self, config: dict):
        secret = config.get("secret")
        if not isinstance(secret, str) or len(secret.encode()) < 16:
            raise ValueError("secret: a string of at least 16 bytes is required")
        skew = config.get("max_skew_seconds", 300)
        if not isinstance(skew, int) or isinstance(skew, bool) or skew < 1:
            raise ValueError("max_skew_seconds: a positive whole number of seconds")
        self.secret = secret.encode()
        self.max_skew = skew
        self.signature_header = config.get("signature_header", "x-signature").lower()
        self.timestamp_header = config.get("timestamp_header", "x-timestamp").lower()


class WitWorld(wit_world.WitWorld):
    def init(self, config: str) -> types.Features:
        global _settings
        try:
            _settings = Settings(json.loads(config))
        except (ValueError, TypeError, AttributeError) as e:
            raise Err(str(e))
        return types.Features(0)

    def on_request(self, ctx: types.Context, req: types.RequestHead) -> types.RequestAction:
        s = _settings
        signature = req.header(s.signature_header)
        timestamp = req.header(s.timestamp_header)
        if signature is None or timestamp is None:
            return _error(401, "missing_signature", ctx)
        try:
            sent_at = int(timestamp.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            return _error(401, "stale_request", ctx)
        now = host.now_ms() // 1000
        if abs(now - sent_at) > s.max_skew:
            return _error(401, "stale_request", ctx)
        target = req.path()
        query = req.query()
        if query is not None:
            target += "?" + query
        message = b"\n".join([req.method().encode(), target.encode(), timestamp])
        expected = hmac.new(s.secret, message, hashlib.sha256).hexdigest().encode()
        if not hmac.compare_digest(expected, signature.strip().lower()):
            return _error(401, "invalid_signature", ctx)
        ctx.set_attribute("signature", "verified")
        # The signature has done its job; the upstream does not need it.
        req.remove_header(s.signature_header)
        return types.RequestAction_Continue()

    # Hooks the plugin does not ask for in `init` are never called.
    def on_request_body(self, ctx, req, body):
        return types.BodyAction_Continue()

    def on_response(self, ctx, req, resp):
        return types.ResponseAction_Continue()

    def on_response_body(self, ctx, resp, body):
        return types.BodyAction_Continue()
