#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "http/router.h"

namespace lossguard::http {

// JSON responses. Every error body has the same shape:
//   {"error": {"status": 400, "code": "invalid_record", "message": "...", ...extra}}
Response JsonResponse(bhttp::status status, const nlohmann::json& body);
// For bodies already serialised (large step pages are spliced together as text).
Response JsonTextResponse(bhttp::status status, std::string body);
Response ErrorResponse(bhttp::status status, std::string_view code, std::string_view message,
                       const nlohmann::json& extra = nlohmann::json::object());

}  // namespace lossguard::http
