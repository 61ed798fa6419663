// Incidents through the real server: a symptom's alert names its cause's stored id, the cause lists
// its symptoms; and Hugging Face logs written every 10 or 500 steps (interval-averaged losses, no
// token counts) imported with `lossguard import`, where the GA bug must still be found.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <random>

#include "lossguard/client/http_client.h"
#include "lossguard/wire/record_codec.h"
#include "support/processes.h"
#include "support/records.h"
#include "support/temp_dir.h"

namespace lossguard::testing {
namespace incident_test {

using nlohmann::json;
using ::testing::Contains;
const std::string kCorpus = std::string(LOSSGUARD_SOURCE_DIR) + "/tests/scenarios/";

json Alerts(const std::string& url, const std::string& run) {
  client::HttpClient client(url);
  auto response = client.Get("/api/v1/alerts?run=" + run + "&state=all");
  EXPECT_EQ(response.status, 200) << response.body;
  return json::parse(response.body).at("alerts");
}

const json* Find(const json& alerts, const std::string& kind) {
  for (const json& a : alerts) {
    if (a["kind"] == kind) return &a;
  }
  return nullptr;
}

TEST(Incidents, ASymptomNamesItsCausesIdAndTheCauseListsIt) {
  TempDir dir;
  ServerProcess server({.db = dir.File("db")});
  client::HttpClient client(server.url());
  // A trainer with reference data switches to summing 8 micro-batch means at step 100: the loss
  // and the gradients grow 8x at once. Sent in batches that split the incident's steps.
  std::mt19937 rng(1);
  std::lognormal_distribution<double> noise(0.0, 0.1);
  std::string body;
  for (int step = 0; step < 140; ++step) {
    const double factor = step >= 100 ? 8 : 1;
    wire::StepRecord r = MakeRecord("switch", step, 3.0 * factor);
    r.ga_steps = 8;
    r.ref_loss = 3.0;
    r.grad_norm = noise(rng) * factor;
    body += wire::CanonicalJson(r) + "\n";
    if (step % 7 == 6 || step == 139) {
      ASSERT_EQ(client.Post("/api/v1/steps", body, "application/x-ndjson").status, 200);
      body.clear();
    }
  }
  json alerts = Alerts(server.url(), "switch");
  const json* cause = Find(alerts, "loss_scale_mismatch");
  const json* symptom = Find(alerts, "grad_explosion");
  ASSERT_TRUE(cause && symptom) << alerts.dump(2);
  EXPECT_EQ((*cause)["severity"], "critical");
  EXPECT_EQ((*symptom)["severity"], "info") << "one page, not two";
  EXPECT_EQ((*symptom)["evidence"]["caused_by"]["id"], (*cause)["id"]);
  EXPECT_EQ((*symptom)["evidence"]["caused_by"]["kind"], "loss_scale_mismatch");
  EXPECT_THAT((*cause)["symptoms"], Contains((*symptom)["id"]));
  EXPECT_EQ((*symptom)["symptoms"], json::array());
  // Every alert is the cause or one of its symptoms (the loss spike of the 8x jump is one too):
  // one incident, one page.
  for (const json& a : alerts) {
    if (a["id"] == (*cause)["id"]) continue;
    EXPECT_EQ(a["evidence"]["caused_by"]["id"], (*cause)["id"]) << a.dump();
    EXPECT_EQ(a["severity"], "info") << a.dump();
    EXPECT_THAT((*cause)["symptoms"], Contains(a["id"]));
  }

  // Restarted, the server keeps linking: the symptom's episode continues under its cause.
  server.Stop(SIGTERM, std::chrono::seconds(15));
  ServerProcess restarted({.db = dir.File("db")});
  client::HttpClient again(restarted.url());
  for (int step = 140; step < 150; ++step) {
    wire::StepRecord r = MakeRecord("switch", step, 24.0);
    r.ga_steps = 8;
    r.ref_loss = 3.0;
    r.grad_norm = 8.0 * noise(rng);
    ASSERT_EQ(again.Post("/api/v1/steps", wire::CanonicalJson(r), "application/x-ndjson").status,
              200);
  }
  json after = Alerts(restarted.url(), "switch");
  ASSERT_EQ(after.size(), alerts.size()) << after.dump(2);
  const json* continued = Find(after, "grad_explosion");
  ASSERT_TRUE(continued);
  EXPECT_EQ((*continued)["severity"], "info");
  EXPECT_EQ((*continued)["evidence"]["caused_by"]["id"], (*cause)["id"]);
}

// A Hugging Face trainer_state.json as the Trainer writes it at logging_steps=N: one entry every N
// optimizer steps (global_step counted from 1), the loss averaged over the interval and rounded to
// 4 decimals, grad_norm and learning_rate of the logging step, no token counts.
std::string TrainerState(const std::string& corpus_run, int logging_steps, TempDir& dir) {
  std::ifstream in(kCorpus + corpus_run + ".ndjson");
  json history = json::array();
  double sum = 0;
  int n = 0;
  for (std::string line; std::getline(in, line);) {
    json r = json::parse(line);
    if (r["rank"] != 0) continue;
    sum += r["loss"].get<double>();
    ++n;
    const std::int64_t global_step = r["step"].get<std::int64_t>() + 1;
    if (global_step % logging_steps) continue;
    history.push_back({{"step", global_step},
                       {"loss", std::round(sum / n * 1e4) / 1e4},
                       {"grad_norm", r["grad_norm"]},
                       {"learning_rate", r["lr"]},
                       {"epoch", 0.0}});
    sum = 0;
    n = 0;
  }
  const std::string path = dir.File(corpus_run + "." + std::to_string(logging_steps) + ".json");
  std::ofstream(path) << json{{"log_history", history},
                              {"logging_steps", logging_steps},
                              {"train_batch_size", 2},
                              {"global_step", history.back()["step"]}}
                             .dump(1);
  return path;
}

CommandResult Import(const std::string& file, const std::string& run, const std::string& ga_steps,
                     const std::string& url) {
  return RunCommand({LOSSGUARD_CLI_BINARY, "import", file, "--run", run, "--ga-steps", ga_steps,
                     "--vocab-size", "96", "--server", url},
                    std::chrono::seconds(60));
}

TEST(Import, SparseTrainerLogsOfTheGaBugAreCaughtAndHealthyOnesStayQuiet) {
  TempDir dir;
  ServerProcess server({.db = dir.File("db")});
  for (int logging_steps : {10, 100, 500}) {
    SCOPED_TRACE("logging_steps " + std::to_string(logging_steps));
    const std::string bug = "bug-" + std::to_string(logging_steps);
    CommandResult result =
        Import(TrainerState("long-bug-sum-no-ga-div", logging_steps, dir), bug, "4", server.url());
    ASSERT_EQ(result.exit_code, 0) << result.err;
    EXPECT_THAT(result.out, ::testing::HasSubstr(
                                "imported " + std::to_string(2000 / logging_steps) + " records"));
    json alerts = Alerts(server.url(), bug);
    if (logging_steps < 500) {
      const json* found = Find(alerts, "loss_scale_mismatch");
      ASSERT_TRUE(found) << alerts.dump(2);
      EXPECT_EQ((*found)["severity"], "critical");
      EXPECT_EQ((*found)["evidence"]["explained_by"], "ga_steps");
      EXPECT_EQ((*found)["evidence"]["reference_method"], "ln_vocab_size_bound");
      // Two logged intervals above the bound confirm it.
      EXPECT_EQ((*found)["first_step"], 2 * logging_steps);
    }
    // At logging_steps 500 the first interval's average (1.15 ln V) is under the bound: not
    // findable from these logs (README: limits).

    const std::string ok = "ok-" + std::to_string(logging_steps);
    result =
        Import(TrainerState("long-healthy-mb4-ga2", logging_steps, dir), ok, "2", server.url());
    ASSERT_EQ(result.exit_code, 0) << result.err;
    for (const json& a : Alerts(server.url(), ok))
      EXPECT_EQ(a["severity"], "info") << "healthy: " << a.dump();
  }
}

}  // namespace incident_test
}  // namespace lossguard::testing
