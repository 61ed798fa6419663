#!/usr/bin/env python3
"""Checks schema/step-record.schema.json against the shared test vectors and the sample run.

The C++ side of the same vectors is tests/wire/record_codec_test.cc (SchemaVectors): together they
keep the published schema and the server's parser in agreement. Exits non-zero on any disagreement
and prints its closing line in the 'N passed, N failed' form.
"""
import copy
import json
import sys
from pathlib import Path

import jsonschema

root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2]
schema = json.loads((root / "schema/step-record.schema.json").read_text())
jsonschema.Draft202012Validator.check_schema(schema)
validator = jsonschema.Draft202012Validator(schema)
suite = json.loads((root / "tests/schema/vectors.json").read_text())

passed = failed = 0
for vector in suite["vectors"]:
    if vector.get("schema_cannot_express"):
        continue
    record = copy.deepcopy(suite["base"])
    record.update(vector.get("set", {}))
    for key in vector.get("unset", []):
        record.pop(key)
    errors = list(validator.iter_errors(record))
    if (not errors) == vector["valid"]:
        passed += 1
    else:
        failed += 1
        print(f"FAIL {vector['why']}: expected valid={vector['valid']}, schema says {errors[:1] or 'valid'}")

for number, line in enumerate((root / "schema/examples/sample-run.ndjson").read_text().splitlines(), 1):
    errors = list(validator.iter_errors(json.loads(line)))
    if errors:
        failed += 1
        print(f"FAIL sample-run.ndjson:{number}: {errors[0].message}")
    else:
        passed += 1

print(f"schema: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
