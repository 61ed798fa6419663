#include "http/responses.h"

namespace lossguard::http {

Response JsonTextResponse(bhttp::status status, std::string body) {
  Response response{status, 11};
  response.set(bhttp::field::content_type, "application/json");
  response.set(bhttp::field::cache_control, "no-store");
  response.body() = std::move(body);
  response.prepare_payload();
  return response;
}

Response JsonResponse(bhttp::status status, const nlohmann::json& body) {
  // Replace rather than throw on invalid UTF-8 in echoed input: an error report must not fail.
  return JsonTextResponse(status,
                          body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

Response ErrorResponse(bhttp::status status, std::string_view code, std::string_view message,
                       const nlohmann::json& extra) {
  nlohmann::json error = extra;
  error["status"] = static_cast<unsigned>(status);
  error["code"] = code;
  error["message"] = message;
  return JsonResponse(status, {{"error", error}});
}

}  // namespace lossguard::http
