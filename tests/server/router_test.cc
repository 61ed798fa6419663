#include "http/router.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "http/responses.h"

namespace lossguard::http {
namespace router_test {

using ::testing::HasSubstr;

RawRequest Make(bhttp::verb method, std::string target, std::string authorization = "") {
  RawRequest request{method, target, 11};
  if (!authorization.empty()) request.set(bhttp::field::authorization, authorization);
  return request;
}

nlohmann::json Body(const Response& response) { return nlohmann::json::parse(response.body()); }

Router MakeRouter(std::string token = "", std::string read_token = "") {
  Router router(std::move(token), std::move(read_token));
  router.Add(
      bhttp::verb::get, "/healthz",
      [](const Request&) {
        return JsonResponse(bhttp::status::ok, {{"ok", true}});
      },
      Access::kOpen);
  router.Add(bhttp::verb::get, "/things/{id}/parts", [](const Request& request) {
    return JsonResponse(bhttp::status::ok,
                        {{"id", request.params.at("id")}, {"query", request.query}});
  });
  router.Add(
      bhttp::verb::post, "/things",
      [](const Request&) {
        return JsonResponse(bhttp::status::ok, {{"ok", true}});
      },
      Access::kWrite);
  router.Add(bhttp::verb::get, "/boom",
             [](const Request&) -> Response { throw std::runtime_error("disk is full"); });
  return router;
}

TEST(Router, CapturesAndDecodes) {
  Response response =
      MakeRouter().Handle(Make(bhttp::verb::get, "/things/a%3Ab/parts?x=1&y=two%20words&flag"));
  EXPECT_EQ(response.result(), bhttp::status::ok);
  EXPECT_EQ(Body(response)["id"], "a:b");
  EXPECT_EQ(Body(response)["query"],
            (nlohmann::json{{"x", "1"}, {"y", "two words"}, {"flag", ""}}));
  EXPECT_EQ(response[bhttp::field::content_type], "application/json");
}

TEST(Router, UnknownPathIs404WithJson) {
  Response response = MakeRouter().Handle(Make(bhttp::verb::get, "/things/1"));
  EXPECT_EQ(response.result(), bhttp::status::not_found);
  EXPECT_EQ(Body(response)["error"]["code"], "not_found");
  EXPECT_EQ(MakeRouter().Handle(Make(bhttp::verb::get, "/things//parts")).result(),
            bhttp::status::not_found);
}

TEST(Router, WrongMethodIs405WithAllow) {
  Response response = MakeRouter().Handle(Make(bhttp::verb::delete_, "/things"));
  EXPECT_EQ(response.result(), bhttp::status::method_not_allowed);
  EXPECT_EQ(response[bhttp::field::allow], "POST");
  EXPECT_THAT(Body(response)["error"]["message"].get<std::string>(),
              HasSubstr("DELETE is not allowed on /things"));
}

TEST(Router, TokenGuardsWriteRoutesOnly) {
  Router router = MakeRouter("s3cret");
  EXPECT_EQ(router.Handle(Make(bhttp::verb::post, "/things")).result(),
            bhttp::status::unauthorized);
  EXPECT_EQ(router.Handle(Make(bhttp::verb::post, "/things", "Bearer wrong")).result(),
            bhttp::status::unauthorized);
  EXPECT_EQ(router.Handle(Make(bhttp::verb::post, "/things", "Bearer s3cre")).result(),
            bhttp::status::unauthorized);
  EXPECT_EQ(router.Handle(Make(bhttp::verb::post, "/things", "Basic s3cret")).result(),
            bhttp::status::unauthorized);
  Response denied = router.Handle(Make(bhttp::verb::post, "/things"));
  EXPECT_EQ(denied[bhttp::field::www_authenticate], "Bearer");
  EXPECT_EQ(router.Handle(Make(bhttp::verb::post, "/things", "Bearer s3cret")).result(),
            bhttp::status::ok);
  EXPECT_EQ(router.Handle(Make(bhttp::verb::get, "/things/1/parts")).result(), bhttp::status::ok);
  EXPECT_EQ(MakeRouter().Handle(Make(bhttp::verb::post, "/things")).result(), bhttp::status::ok)
      << "without a configured token, writes are open (the server only listens on loopback then)";
}

TEST(Router, AReadTokenGuardsReadsAndTheWriteTokenReadsToo) {
  Router router = MakeRouter("writer-token", "reader-token");
  auto get = [&](const std::string& authorization) {
    return router.Handle(Make(bhttp::verb::get, "/things/1/parts", authorization)).result();
  };
  EXPECT_EQ(get(""), bhttp::status::unauthorized);
  EXPECT_EQ(get("Bearer wrong"), bhttp::status::unauthorized);
  EXPECT_EQ(get("Bearer reader-toke"), bhttp::status::unauthorized);
  EXPECT_EQ(get("Bearer reader-token"), bhttp::status::ok);
  EXPECT_EQ(get("Bearer writer-token"), bhttp::status::ok);
  EXPECT_THAT(Body(router.Handle(Make(bhttp::verb::get, "/things/1/parts")))["error"]["message"]
                  .get<std::string>(),
              HasSubstr("needs a read token"));
  EXPECT_EQ(router.Handle(Make(bhttp::verb::head, "/things/1/parts")).result(),
            bhttp::status::unauthorized)
      << "HEAD is a read";
  EXPECT_EQ(router.Handle(Make(bhttp::verb::post, "/things", "Bearer reader-token")).result(),
            bhttp::status::unauthorized)
      << "the read token does not write";
  EXPECT_EQ(router.Handle(Make(bhttp::verb::post, "/things", "Bearer writer-token")).result(),
            bhttp::status::ok);
  EXPECT_EQ(router.Handle(Make(bhttp::verb::get, "/healthz")).result(), bhttp::status::ok)
      << "open routes stay open";
  // A read token alone: writes as before (open only on loopback, which the server enforces).
  Router read_only = MakeRouter("", "reader-token");
  EXPECT_EQ(read_only.Handle(Make(bhttp::verb::get, "/things/1/parts")).result(),
            bhttp::status::unauthorized);
  EXPECT_EQ(
      read_only.Handle(Make(bhttp::verb::get, "/things/1/parts", "Bearer reader-token")).result(),
      bhttp::status::ok);
}

TEST(Router, MalformedEscapesAre400) {
  EXPECT_EQ(MakeRouter().Handle(Make(bhttp::verb::get, "/things/1/parts?x=%zz")).result(),
            bhttp::status::bad_request);
  EXPECT_EQ(MakeRouter().Handle(Make(bhttp::verb::get, "/things/%4/parts")).result(),
            bhttp::status::bad_request);
}

TEST(Router, HandlerExceptionBecomes500WithTheReason) {
  Response response = MakeRouter().Handle(Make(bhttp::verb::get, "/boom"));
  EXPECT_EQ(response.result(), bhttp::status::internal_server_error);
  EXPECT_EQ(Body(response)["error"]["message"], "disk is full");
}

TEST(PercentDecode, Cases) {
  EXPECT_EQ(PercentDecode("a%2Fb+c"), "a/b+c");
  EXPECT_EQ(PercentDecode("%"), std::nullopt);
  EXPECT_EQ(PercentDecode("%g0"), std::nullopt);
}

}  // namespace router_test
}  // namespace lossguard::http
