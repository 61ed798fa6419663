// lossguard copy: a SQLite database moved to PostgreSQL (and back) by the real CLI, checked through
// the real servers' answers; a copy killed midway and run again; a destination it must refuse.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <csignal>
#include <thread>

#include "e2e/corpus.h"
#include "e2e/e2e_util.h"
#include "lossguard/client/http_client.h"
#include "store/postgres.h"
#include "store/store.h"
#include "support/postgres_server.h"
#include "support/processes.h"
#include "support/records.h"
#include "support/temp_dir.h"

namespace lossguard::testing {
namespace copy_test {

using nlohmann::json;
using ::testing::HasSubstr;

CommandResult CopyCommand(const std::string& from, const std::string& to,
                          std::vector<std::string> extra = {}) {
  std::vector<std::string> argv = {LOSSGUARD_CLI_BINARY, "copy", "--from", from, "--to", to};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return RunCommand(argv, std::chrono::minutes(5));
}

// Everything a user can read of a database through the API, ids and times included.
std::vector<std::string> Answers(const std::string& url, const std::vector<std::string>& runs) {
  client::HttpClient client(url);
  std::vector<std::string> out;
  auto get = [&](const std::string& target) {
    auto response = client.Get(target);
    EXPECT_EQ(response.status, 200) << target << ": " << response.body;
    out.push_back(target + " " + response.body);
  };
  get("/api/v1/runs?limit=1000");
  get("/api/v1/alerts?limit=10000");
  for (const std::string& run : runs) {
    get("/api/v1/runs/" + run);
    get("/api/v1/runs/" + run + "/steps?limit=100000");
    get("/api/v1/runs/" + run + "/steps?max_points=100");
  }
  return out;
}

const std::vector<std::string> kRuns = {"bug-nan", "bug-lr-spike", "healthy-mb2-ga2-ws2",
                                        "bug-ga-change.minimal"};

TEST(Copy, SqliteToPostgresAndBackKeepsEveryRecordAlertAndAnswer) {
  TempDir dir;
  const auto sqlite = dir.File("old.db");
  std::vector<std::string> before;
  {
    ServerProcess server({.db = sqlite});
    client::HttpClient client(server.url());
    for (const std::string& run : kRuns) {
      auto lines = Lines(run);
      Send(client, lines, 0, lines.size());
    }
    before = Answers(server.url(), kRuns);
    server.Stop(SIGTERM, std::chrono::seconds(15));
  }
  ASSERT_NE(before[1].find("nonfinite"), std::string::npos) << "the runs raised alerts";

  PostgresServer postgres;
  const std::string uri = postgres.CreateDatabase("copied");
  CommandResult copied = CopyCommand(sqlite.string(), uri);
  ASSERT_EQ(copied.exit_code, 0) << copied.out << copied.err;
  EXPECT_THAT(copied.out, HasSubstr("steps: " + std::to_string([&] {
                                      std::size_t n = 0;
                                      for (const auto& run : kRuns) n += Lines(run).size();
                                      return n;
                                    }()) +
                                    " rows, as in the source"));

  ServerProcess on_postgres({.db = uri, .stderr_log = dir.File("pg-server.log")});
  EXPECT_EQ(Answers(on_postgres.url(), kRuns), before);

  // The copy goes on as the database: new alerts are numbered after the copied ones.
  client::HttpClient client(on_postgres.url());
  json nan = RecordJson("after-copy", 0, 1.0);
  nan["loss"] = "NaN";
  ASSERT_EQ(client.Post("/api/v1/steps", nan.dump() + "\n", "application/x-ndjson").status, 200u);
  const json alerts = json::parse(client.Get("/api/v1/alerts?limit=10000").body)["alerts"];
  std::set<std::int64_t> ids;
  for (const json& alert : alerts) ids.insert(alert["id"].get<std::int64_t>());
  EXPECT_EQ(ids.size(), alerts.size()) << "alert ids stay unique";

  // And back to a SQLite file: the same answers again.
  on_postgres.Stop(SIGTERM, std::chrono::seconds(15));
  const auto back = dir.File("back.db");
  CommandResult returned = CopyCommand(uri, back.string());
  ASSERT_EQ(returned.exit_code, 0) << returned.out << returned.err;
  ServerProcess on_sqlite({.db = back});
  std::vector<std::string> after = Answers(on_sqlite.url(), kRuns);
  EXPECT_EQ(std::vector<std::string>(after.begin() + 2, after.end()),
            std::vector<std::string>(before.begin() + 2, before.end()));
}

// A copy killed (SIGKILL) midway leaves whole chunks only; the same command again finishes it,
// and the destination then holds exactly the source's records.
TEST(Copy, KilledMidwayAndRunAgainLosesNothing) {
  TempDir dir;
  const auto sqlite = dir.File("big.db");
  constexpr std::int64_t kSteps = 60'000, kRanks = 4;
  {
    store::Store store(sqlite, {.durability = store::Durability::kNormal});
    for (std::int64_t first = 0; first < kSteps; first += 5000) {
      std::vector<wire::StepRecord> batch;
      for (std::int64_t step = first; step < first + 5000; ++step) {
        for (std::int64_t rank = 0; rank < kRanks; ++rank)
          batch.push_back(
              MakeRecord("big", step, 2.0 + 1.0 / static_cast<double>(step + 1), rank, kRanks));
      }
      store.Ingest(batch);
    }
  }
  PostgresServer postgres;
  const std::string uri = postgres.CreateDatabase("interrupted");
  store::PostgresOptions peek_options;
  peek_options.uri = uri;
  {
    BackgroundProcess copy({LOSSGUARD_CLI_BINARY, "copy", "--from", sqlite.string(), "--to", uri,
                            "--chunk-rows", "2000"});
    // Until the steps are partly there: then kill -9.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    std::int64_t copied = 0;
    while (std::chrono::steady_clock::now() < deadline && copy.Running()) {
      try {
        store::PostgresDatabase peek(peek_options);
        store::Statement count(peek, "SELECT COUNT(*) FROM steps");
        count.Step();
        copied = count.Int(0);
      } catch (const std::exception&) {
        // The schema is not there yet.
      }
      if (copied > 0) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ASSERT_GT(copied, 0);
    ASSERT_LT(copied, kSteps * kRanks) << "the copy must still be running when it is killed";
    ASSERT_TRUE(copy.Running()) << copy.LogText();
  }  // SIGKILL

  CommandResult again = CopyCommand(sqlite.string(), uri, {"--chunk-rows", "2000"});
  ASSERT_EQ(again.exit_code, 0) << again.out << again.err;
  EXPECT_THAT(again.out, HasSubstr("were there from an earlier run"));

  store::Store source(sqlite),
      destination(store::StoreLocation{store::Backend::kPostgres, {}, peek_options});
  store::StepQuery all;
  all.limit = kSteps * kRanks + 1;
  EXPECT_EQ(destination.runs().Steps("big", all)->records,
            source.runs().Steps("big", all)->records);
  EXPECT_EQ(destination.runs().Get("big")->records, kSteps * kRanks);
}

TEST(Copy, RefusesADestinationHoldingOtherRunsAndBadArguments) {
  TempDir dir;
  const auto sqlite = dir.File("source.db");
  const auto other = dir.File("other.db");
  {
    store::Store source(sqlite);
    source.Ingest({MakeRecord("mine", 0, 2.0)});
    store::Store destination(other);
    destination.Ingest({MakeRecord("theirs", 0, 2.0)});
  }
  CommandResult refused = CopyCommand(sqlite.string(), other.string());
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_THAT(refused.err, HasSubstr("already holds run \"theirs\""));
  EXPECT_EQ(store::Store(other).runs().List({}).runs.size(), 1u) << "and it is left as it was";

  CommandResult same = CopyCommand(sqlite.string(), "sqlite:" + sqlite.string());
  EXPECT_EQ(same.exit_code, 1);
  EXPECT_THAT(same.err, HasSubstr("the same database"));
  CommandResult password = CopyCommand(sqlite.string(), "postgresql://u:secret@127.0.0.1:1/db");
  EXPECT_EQ(password.exit_code, 2);
  EXPECT_THAT(password.err, HasSubstr("holds a password"));
  EXPECT_THAT(password.err, ::testing::Not(HasSubstr("secret")));
  CommandResult missing = CopyCommand(dir.File("missing.db").string(), other.string());
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.err, HasSubstr("missing.db"));
}

}  // namespace copy_test
}  // namespace lossguard::testing
