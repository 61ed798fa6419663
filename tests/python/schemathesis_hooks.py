"""Schemathesis hooks for lossguard's API (imported by the contract test, and by the schemathesis
CLI through SCHEMATHESIS_HOOKS): how to send an application/x-ndjson body."""

import json

import hypothesis
import schemathesis

# Schemathesis steers generation with hypothesis.target() (each operation's success rate), and
# Hypothesis' target phase can crash inside its own optimiser (IndexError in the hill climb's
# attempt_replace, seen with hypothesis 6.170.27), which the run reports as the operation's
# runtime error. The targets only steer which inputs are tried: without them every generated
# request is still sent and every check still judges it.
hypothesis.target = lambda observation, *, label="": observation


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
