"""{{name}}: a Gatehouse plugin in Python. It sets `x-greeting` on every request
it sees. The hooks are the exports of `wit/plugin.wit`, in snake_case.

componentize-py bundles the modules imported while it builds: import at the top
whatever the hooks need (a module first imported inside a hook is missing).
"""

import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import types

_greeting = b""


class WitWorld(wit_world.WitWorld):
    def init(self, config: str) -> types.Features:
        """Runs once per instance; `raise Err(...)` is shown at load time."""
        global _greeting
        greeting = json.loads(config).get("greeting", "hello from {{name}}")
        if not isinstance(greeting, str) or not greeting:
            raise Err("greeting must be a non-empty string")
        _greeting = greeting.encode()
        return types.Features(0)  # or types.Features.RESPONSE_HEADERS | ...

    def on_request(self, ctx: types.Context, req: types.RequestHead) -> types.RequestAction:
        req.set_header("x-greeting", _greeting)
        return types.RequestAction_Continue()
        # Or answer the client yourself:
        # return types.RequestAction_Respond(types.Response(403, [], b"no"))

    # Hooks not asked for in `init` are never called, but must be defined.
    def on_request_body(self, ctx, req, body):
        return types.BodyAction_Continue()

    def on_response(self, ctx, req, resp):
        return types.ResponseAction_Continue()

    def on_response_body(self, ctx, resp, body):
        return types.BodyAction_Continue()
