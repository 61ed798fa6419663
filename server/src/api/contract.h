#pragma once

#include <string_view>

#include "http/router.h"

namespace lossguard::api {

// The REST contract as the repository holds it (schema/openapi.json and the wire format's
// schema/step-record.schema.json, which the first references), embedded at build time.
std::string_view OpenApiDocument();
std::string_view StepRecordSchema();

// GET /api/v1/openapi.json and GET /api/v1/step-record.schema.json: open, like /healthz (they hold
// no data), so that a client or a fuzzer can read the contract before it has a token.
void RegisterContract(http::Router& router);

}  // namespace lossguard::api
