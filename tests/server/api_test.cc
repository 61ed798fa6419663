#include "api/api.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "server/store_fixtures.h"
#include "support/records.h"
#include "support/temp_dir.h"

namespace lossguard::api {
namespace api_test {

using nlohmann::json;
using ::testing::HasSubstr;
namespace bhttp = http::bhttp;

class ApiTest : public ::testing::Test {
 protected:
  ApiTest() : store_(dir_.File("db")) { RegisterApi(router_, store_); }

  http::Response Get(const std::string& target) {
    return router_.Handle(http::RawRequest{bhttp::verb::get, target, 11});
  }
  http::Response Post(const std::string& target, const std::string& body,
                      const std::string& content_type = "application/json") {
    http::RawRequest request{bhttp::verb::post, target, 11};
    if (!content_type.empty()) request.set(bhttp::field::content_type, content_type);
    request.body() = body;
    request.prepare_payload();
    return router_.Handle(request);
  }
  static json Body(const http::Response& response) { return json::parse(response.body()); }

  static json Record(const std::string& run, int step, json loss = 2.0) {
    return {{"run", run},   {"step", step}, {"ga_steps", 8}, {"micro_batch_size", 1},
            {"loss", loss}, {"tokens", 100}};
  }
  static std::string Batch(std::initializer_list<json> records) {
    return json{{"records", records}}.dump();
  }

  lossguard::testing::TempDir dir_;
  store::Store store_;
  http::Router router_;
};

TEST_F(ApiTest, IngestJsonThenNdjsonWithDuplicatesAndReplacements) {
  http::Response first = Post("/api/v1/steps", Batch({Record("r", 0), Record("r", 1)}));
  ASSERT_EQ(first.result(), bhttp::status::ok) << first.body();
  // The counts a collector of any version reads, and the run's verdicts for those that guard.
  EXPECT_EQ(Body(first),
            (json{{"accepted", 2},
                  {"duplicates", 0},
                  {"replaced", 0},
                  {"verdicts", {{"r", {{"through_step", 1}, {"open", json::array()}}}}}}));
  std::string ndjson = Record("r", 1).dump() + "\n" + Record("r", 0, 9.0).dump() + "\n" +
                       Record("r", 2).dump() + "\n";
  http::Response second = Post("/api/v1/steps", ndjson, "application/x-ndjson");
  ASSERT_EQ(second.result(), bhttp::status::ok) << second.body();
  EXPECT_EQ(Body(second),
            (json{{"accepted", 3},
                  {"duplicates", 1},
                  {"replaced", 1},
                  {"verdicts", {{"r", {{"through_step", 2}, {"open", json::array()}}}}}}));
}

TEST_F(ApiTest, InvalidBatchIs400NamingRecordAndFieldAndStoresNothing) {
  json bad = Record("r", 5);
  bad["micro_batch_size"] = "one";
  http::Response response = Post("/api/v1/steps", Batch({Record("r", 3), Record("r", 4), bad}));
  ASSERT_EQ(response.result(), bhttp::status::bad_request);
  json error = Body(response)["error"];
  EXPECT_EQ(error["code"], "invalid_batch");
  EXPECT_EQ(error["record"], 2);
  EXPECT_EQ(error["field"], "micro_batch_size");
  EXPECT_THAT(error["message"].get<std::string>(),
              HasSubstr("must be an integer, but got \"one\""));
  EXPECT_THAT(error["message"].get<std::string>(), HasSubstr("nothing from this batch was stored"));
  EXPECT_EQ(Get("/api/v1/runs/r").result(), bhttp::status::not_found);
}

TEST_F(ApiTest, MalformedJsonAndWrongMediaType) {
  http::Response malformed = Post("/api/v1/steps", "{\"records\": [ {");
  EXPECT_EQ(malformed.result(), bhttp::status::bad_request);
  EXPECT_EQ(Body(malformed)["error"]["record"], nullptr);
  http::Response media = Post("/api/v1/steps", Batch({Record("r", 0)}), "text/plain");
  EXPECT_EQ(media.result(), bhttp::status::unsupported_media_type);
  EXPECT_THAT(Body(media)["error"]["message"].get<std::string>(), HasSubstr("got \"text/plain\""));
  EXPECT_EQ(Post("/api/v1/steps", Batch({Record("r", 0)}), "").result(),
            bhttp::status::unsupported_media_type);
}

TEST_F(ApiTest, RunsAndRunShapes) {
  json last = Record("r", 1, "NaN");
  last["grad_norm"] = "Infinity";
  last["vocab_size"] = 32000;
  ASSERT_EQ(Post("/api/v1/steps", Batch({Record("r", 0), last})).result(), bhttp::status::ok);
  json runs = Body(Get("/api/v1/runs"));
  ASSERT_EQ(runs["runs"].size(), 1u);
  json run = runs["runs"][0];
  EXPECT_EQ(run["run"], "r");
  EXPECT_EQ(run["records"], 2);
  EXPECT_EQ(run["latest_step"], 1);
  EXPECT_EQ(
      run["config"],
      (json{{"ga_steps", 8}, {"micro_batch_size", 1}, {"world_size", 1}, {"vocab_size", 32000}}));
  EXPECT_EQ(run["last"]["loss"], "NaN");
  EXPECT_EQ(run["last"]["grad_norm"], "Infinity");
  EXPECT_EQ(run["open_alerts"], (json{{"critical", 1}, {"warning", 0}, {"info", 0}}))
      << "the NaN loss opened a nonfinite alert in the ingest transaction";
  EXPECT_EQ(Body(Get("/api/v1/runs/r"))["run"], run);
  http::Response missing = Get("/api/v1/runs/nope");
  EXPECT_EQ(missing.result(), bhttp::status::not_found);
  EXPECT_EQ(Body(missing)["error"]["code"], "unknown_run");
}

TEST_F(ApiTest, StepsRawPagedAndDownsampled) {
  std::string ndjson;
  for (int step = 0; step < 3000; ++step)
    ndjson += Record("r", step, step == 1234 ? 500.0 : 2.0).dump() + "\n";
  ASSERT_EQ(Post("/api/v1/steps", ndjson, "application/x-ndjson").result(), bhttp::status::ok);

  json page = Body(Get("/api/v1/runs/r/steps?from=10&to=20&limit=5"));
  ASSERT_EQ(page["steps"].size(), 5u);
  EXPECT_EQ(page["steps"][0]["step"], 10);
  EXPECT_EQ(page["next"], (json{{"from", 15}, {"from_rank", 0}}));
  json rest = Body(Get("/api/v1/runs/r/steps?from=15&from_rank=0&to=20&limit=100"));
  EXPECT_EQ(rest["steps"].size(), 6u);
  EXPECT_EQ(rest["next"], nullptr);

  json down = Body(Get("/api/v1/runs/r/steps?max_points=100"));
  EXPECT_EQ(down["max_points"], 100);
  EXPECT_EQ(down["from"], 0);
  EXPECT_EQ(down["to"], 2999);
  ASSERT_EQ(down["ranks"].size(), 1u);
  json rank0 = down["ranks"][0];
  EXPECT_LE(rank0["step"].size(), 50u);
  double highest = 0;
  for (const json& value : rank0["loss"]["max"]) highest = std::max(highest, value.get<double>());
  EXPECT_EQ(highest, 500.0) << "the spike at step 1234 survives downsampling";
  std::int64_t total = 0;
  for (const json& count : rank0["count"]) total += count.get<std::int64_t>();
  EXPECT_EQ(total, 3000);
}

TEST_F(ApiTest, StepsQueryErrorsNameTheParameter) {
  ASSERT_EQ(Post("/api/v1/steps", Batch({Record("r", 0)})).result(), bhttp::status::ok);
  struct Case {
    std::string query, message;
  };
  for (const Case& c : std::vector<Case>{
           {"from=-1", "from must be an integer in [0, "},
           {"from=abc", "but got 'abc'"},
           {"to=1.5", "to must be an integer"},
           {"from=10&to=5", "to must be >= from"},
           {"max_points=5", "max_points must be an integer in [10, 100000]"},
           {"limit=0", "limit must be an integer in [1, 100000]"},
           {"max_points=100&limit=5", "do not go with max_points"},
           {"maxpoints=100", "unknown query parameter 'maxpoints'"},
       }) {
    http::Response response = Get("/api/v1/runs/r/steps?" + c.query);
    EXPECT_EQ(response.result(), bhttp::status::bad_request) << c.query;
    EXPECT_THAT(Body(response)["error"]["message"].get<std::string>(), HasSubstr(c.message))
        << c.query;
  }
  EXPECT_EQ(Get("/api/v1/runs/none/steps?max_points=100").result(), bhttp::status::not_found);
}

TEST_F(ApiTest, AlertsFilterAndAck) {
  ASSERT_EQ(Post("/api/v1/steps", Batch({Record("r", 0)})).result(), bhttp::status::ok);
  store::Alert alert =
      lossguard::testing::MakeAlert("r", analyzers::Kind::kGradExplosion,
                                    analyzers::Severity::kCritical, "grad_norm 40x its baseline");
  alert.evidence = {{"ratio", 40.0}};
  std::int64_t id = store_.alerts().Insert(alert);

  json all = Body(Get("/api/v1/alerts"));
  ASSERT_EQ(all["alerts"].size(), 1u);
  json shown = all["alerts"][0];
  EXPECT_EQ(shown["id"], id);
  EXPECT_EQ(shown["kind"], "grad_explosion");
  EXPECT_EQ(shown["evidence"]["ratio"], 40.0);
  EXPECT_EQ(shown["acked"], false);
  EXPECT_EQ(Body(Get("/api/v1/alerts?state=resolved"))["alerts"].size(), 0u);
  EXPECT_EQ(
      Body(Get("/api/v1/alerts?state=open&severity=critical&run=r&kind=grad_explosion"))["alerts"]
          .size(),
      1u);
  EXPECT_EQ(Body(Get("/api/v1/alerts?run=other"))["alerts"].size(), 0u);
  EXPECT_EQ(Body(Get("/api/v1/runs/r"))["run"]["open_alerts"]["critical"], 1);

  EXPECT_THAT(Body(Get("/api/v1/alerts?state=closed"))["error"]["message"].get<std::string>(),
              HasSubstr("state must be one of open, resolved, all, but got 'closed'"));
  EXPECT_EQ(Get("/api/v1/alerts?severity=urgent").result(), bhttp::status::bad_request);

  http::Response ack = Post("/api/v1/alerts/" + std::to_string(id) + "/ack", "", "");
  ASSERT_EQ(ack.result(), bhttp::status::ok) << ack.body();
  EXPECT_EQ(Body(ack)["alert"]["acked"], true);
  EXPECT_EQ(Post("/api/v1/alerts/999/ack", "", "").result(), bhttp::status::not_found);
  EXPECT_EQ(Post("/api/v1/alerts/abc/ack", "", "").result(), bhttp::status::bad_request);
  EXPECT_EQ(Get("/api/v1/alerts/1/ack").result(), bhttp::status::method_not_allowed);
}

TEST_F(ApiTest, Healthz) {
  json health = Body(Get("/healthz"));
  EXPECT_EQ(health["status"], "ok");
  EXPECT_GE(health["schema_version"], 1);
}

}  // namespace api_test
}  // namespace lossguard::api
