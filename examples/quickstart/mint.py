#!/usr/bin/env python3
"""Mints an HS256 JWT for the quickstart: mint.py SECRET SUBJECT "SCOPES" [ROLES]."""
import base64
import hashlib
import hmac
import json
import sys
import time


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


secret, sub, scope = sys.argv[1], sys.argv[2], sys.argv[3]
roles = sys.argv[4].split(",") if len(sys.argv) > 4 else []
header = {"alg": "HS256", "typ": "JWT"}
claims = {"sub": sub, "scope": scope, "roles": roles, "iss": "quickstart", "exp": int(time.time()) + 3600}
signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
print(f"{signing_input}.{b64(signature)}")
