// Replaced records are judged again: a trainer resumed from a checkpoint re-sends steps with other
// values. The old values' episodes stay (resolved, superseded), the new values get their own.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

#include "lossguard/client/http_client.h"
#include "lossguard/wire/record_codec.h"
#include "support/processes.h"
#include "support/records.h"
#include "support/temp_dir.h"

namespace lossguard::testing {
namespace rejudge_test {

using nlohmann::json;
using ::testing::HasSubstr;

// Steps [from, to) of run "resumed": a NaN at `nan_at` (none when negative).
std::string Steps(int from, int to, int nan_at, double level) {
  std::string body;
  for (int step = from; step < to; ++step) {
    wire::StepRecord r = MakeRecord("resumed", step, step == nan_at ? std::nan("") : level);
    r.grad_norm = 1.0 + 0.05 * (step % 5);
    body += wire::CanonicalJson(r) + "\n";
  }
  return body;
}

std::vector<std::string> Describe(const json& alerts) {
  std::vector<std::string> out;
  for (const json& a : alerts) {
    out.push_back(a["kind"].get<std::string>() + " " + a["state"].get<std::string>() + " " +
                  a["first_step"].dump() + " attempt " +
                  std::to_string(a["evidence"].value("attempt", 0)));
  }
  std::sort(out.begin(), out.end());
  return out;
}

TEST(Rejudging, StepsSentAgainAreJudgedAgainAndTheOldEpisodesStay) {
  TempDir dir;
  ServerProcess server({.db = dir.File("db")});
  client::HttpClient client(server.url());
  auto post = [&](const std::string& body) {
    auto response = client.Post("/api/v1/steps", body, "application/x-ndjson");
    EXPECT_EQ(response.status, 200) << response.body;
    return json::parse(response.body);
  };
  auto alerts = [&]() {
    auto response = client.Get("/api/v1/alerts?run=resumed&state=all");
    return json::parse(response.body)["alerts"];
  };
  post(Steps(0, 200, /*nan_at=*/185, 2.0));  // the first attempt: a NaN at 185, open at the end
  ASSERT_EQ(Describe(alerts()), std::vector<std::string>{"nonfinite open 185 attempt 0"});

  // Resumed from the checkpoint of step 170: the same steps again, other values, the NaN again at
  // 185 (the same first_step, but another episode).
  json ingest = post(Steps(170, 200, 185, 2.1));
  EXPECT_EQ(ingest["replaced"], 29);  // the NaN step is the same record again: a duplicate
  EXPECT_EQ(ingest["duplicates"], 1);
  EXPECT_EQ(Describe(alerts()), (std::vector<std::string>{"nonfinite open 185 attempt 1",
                                                          "nonfinite resolved 185 attempt 0"}));
  for (const json& a : alerts()) {
    if (a["evidence"].value("attempt", 0) == 0) {
      EXPECT_THAT(a["message"].get<std::string>(), HasSubstr("superseded: steps from 170"));
      EXPECT_EQ(a["evidence"]["superseded_from"], 170);
    }
  }

  // Sent a third time, but identical: duplicates, nothing judged again.
  EXPECT_EQ(post(Steps(170, 200, 185, 2.1))["duplicates"], 30);
  EXPECT_EQ(alerts().size(), 2u);

  // A restart continues the current attempt.
  server.Stop(SIGTERM, std::chrono::seconds(15));
  ServerProcess restarted({.db = dir.File("db")});
  client::HttpClient again(restarted.url());
  ASSERT_EQ(again.Post("/api/v1/steps", Steps(200, 260, -1, 2.1), "application/x-ndjson").status,
            200);
  auto response = again.Get("/api/v1/alerts?run=resumed&state=all");
  EXPECT_EQ(Describe(json::parse(response.body)["alerts"]),
            (std::vector<std::string>{"nonfinite resolved 185 attempt 0",
                                      "nonfinite resolved 185 attempt 1"}));
}

}  // namespace rejudge_test
}  // namespace lossguard::testing
