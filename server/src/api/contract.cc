#include "api/contract.h"

#include "http/responses.h"

namespace lossguard::api {

void RegisterContract(http::Router& router) {
  using http::bhttp::verb;
  auto serve = [](std::string_view text) {
    return [text](const http::Request&) {
      return http::JsonTextResponse(http::bhttp::status::ok, std::string(text));
    };
  };
  router.Add(verb::get, "/api/v1/openapi.json", serve(OpenApiDocument()), http::Access::kOpen);
  router.Add(verb::get, "/api/v1/step-record.schema.json", serve(StepRecordSchema()),
             http::Access::kOpen);
}

}  // namespace lossguard::api
