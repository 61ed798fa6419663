"""Schemathesis hooks for lossguard's API (imported by the contract test, and by the schemathesis
CLI through SCHEMATHESIS_HOOKS): how to send an application/x-ndjson body."""

import json

import schemathesis


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx, value):
    """The document gives an NDJSON body as the array of its records: one line each. A string or
    bytes (a test's own body, or a fuzzer's invalid one) is sent as it is."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    if isinstance(value, list):
        return "".join(json.dumps(item) + "\n" for item in value).encode()
    return (json.dumps(value) + "\n").encode()
