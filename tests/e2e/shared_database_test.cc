// Several lossguard servers on one PostgreSQL database, as behind a load balancer: any server takes
// any batch of any run, and the alerts, records and counts come out as from one server. Real
// servers, a real PostgreSQL server (tests/support/postgres_server.h), real HTTP on loopback.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <csignal>
#include <fstream>
#include <map>
#include <thread>

#include "e2e/corpus.h"
#include "e2e/e2e_util.h"
#include "lossguard/client/http_client.h"
#include "store/migrations.h"
#include "store/postgres.h"
#include "support/postgres_server.h"
#include "support/processes.h"
#include "support/temp_dir.h"

namespace lossguard::testing {
namespace shared_database_test {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

// Every run of the corpus (the .ndjson files), in name order.
std::vector<std::string> CorpusRuns() {
  std::vector<std::string> runs;
  for (const auto& entry : std::filesystem::directory_iterator(kCorpus)) {
    if (entry.path().extension() == ".ndjson") runs.push_back(entry.path().stem().string());
  }
  std::sort(runs.begin(), runs.end());
  return runs;
}

std::string Body(const std::vector<std::string>& lines, std::size_t begin, std::size_t end) {
  std::string body;
  for (std::size_t i = begin; i < std::min(end, lines.size()); ++i) body += lines[i] + "\n";
  return body;
}

// lossguard servers on one database.
class Servers {
 public:
  Servers(const TempDir& dir, const std::string& database, int count) {
    for (int i = 0; i < count; ++i) {
      servers_.push_back(std::make_unique<ServerProcess>(ServerProcess::Options{
          .db = database, .stderr_log = dir.File("server-" + std::to_string(i) + ".log")}));
    }
  }
  ServerProcess& operator[](std::size_t i) { return *servers_.at(i); }
  std::size_t size() const { return servers_.size(); }

 private:
  std::vector<std::unique_ptr<ServerProcess>> servers_;
};

// A client of each server, as a load balancer would spread one trainer's batches.
class Balancer {
 public:
  explicit Balancer(Servers& servers) {
    for (std::size_t i = 0; i < servers.size(); ++i) {
      clients_.push_back(std::make_unique<client::HttpClient>(
          servers[i].url(), client::HttpClientOptions{.timeout = std::chrono::seconds(20)}));
    }
  }
  client::HttpClient& operator[](std::size_t i) { return *clients_.at(i % clients_.size()); }

  // Posts `body` to server `first`, then to the next ones in turn, until one stores it (200), as a
  // collector retries: on a transport error or a 5xx answer, for at most 60 s. Returns the failed
  // attempts; fails the test on a 4xx or when time runs out.
  int PostUntilStored(std::size_t first, const std::string& body) {
    const auto deadline = Clock::now() + std::chrono::seconds(60);
    int failures = 0;
    for (std::size_t attempt = first; Clock::now() < deadline; ++attempt) {
      try {
        auto response = (*this)[attempt].Post("/api/v1/steps", body, "application/x-ndjson");
        if (response.status == 200) return failures;
        EXPECT_GE(response.status, 500u) << response.body;
        if (response.status < 500) return failures;
      } catch (const client::HttpError&) {
        // The server is gone or did not answer: the batch may or may not have been stored.
      }
      ++failures;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ADD_FAILURE() << "a batch was not stored within 60 s";
    return failures;
  }

 private:
  std::vector<std::unique_ptr<client::HttpClient>> clients_;
};

constexpr std::size_t kBatch = 50;

// The corpus's batches alternating between two servers (each run's batch k to server k % 2), two
// trainers at once: every run's alerts are those of one SQLite server, message for message, read
// from either server. Each batch finds the run judged further by the other server, so every batch
// rebuilds the run's analyzer from the stored steps.
TEST(SharedDatabase, TwoServersTakingAlternateBatchesRaiseTheAlertsOfOneSqliteServer) {
  TempDir dir;
  const std::vector<std::string> runs = CorpusRuns();
  ASSERT_GE(runs.size(), 50u);
  const auto expected = AlertsOfOneServer(dir.File("single.db"), runs);

  PostgresServer postgres;
  Servers servers(dir, postgres.CreateDatabase("alternate"), 2);
  std::vector<std::thread> trainers;
  for (std::size_t t = 0; t < 2; ++t) {
    trainers.emplace_back([&, t] {
      Balancer balancer(servers);
      for (std::size_t r = t; r < runs.size(); r += 2) {
        const auto lines = Lines(runs[r]);
        for (std::size_t b = 0; b * kBatch < lines.size(); ++b) {
          auto response = balancer[b].Post(
              "/api/v1/steps", Body(lines, b * kBatch, (b + 1) * kBatch), "application/x-ndjson");
          ASSERT_EQ(response.status, 200) << response.body;
        }
      }
    });
  }
  for (auto& trainer : trainers) trainer.join();

  Balancer readers(servers);
  for (std::size_t r = 0; r < runs.size(); ++r) {
    EXPECT_EQ(Comparable(Alerts(readers[r], runs[r])), expected.at(runs[r])) << runs[r];
    auto run = json::parse(readers[r + 1].Get("/api/v1/runs/" + runs[r]).body);
    EXPECT_EQ(run["run"]["records"], Lines(runs[r]).size()) << runs[r];
  }
}

const std::vector<std::string> kRuns = {"bug-lr-spike",  "bug-ga-change.minimal",
                                        "bug-nan",       "healthy-mb2-ga2-ws2",
                                        "bug-zero-grad", "bug-sum-no-ga-div-ws2"};

// Sends batches [from, to) of every run of kRuns through `balancer`, alternating servers.
void SendAlternating(Balancer& balancer,
                     const std::map<std::string, std::vector<std::string>>& lines, std::size_t from,
                     std::size_t to) {
  for (const auto& [run, l] : lines) {
    for (std::size_t b = from; b < to && b * kBatch < l.size(); ++b) {
      balancer.PostUntilStored(b, Body(l, b * kBatch, (b + 1) * kBatch));
    }
  }
}

void ExpectAllStored(Balancer& balancer,
                     const std::map<std::string, std::vector<std::string>>& lines,
                     const std::map<std::string, std::vector<std::string>>& expected,
                     std::size_t server) {
  for (const auto& [run, l] : lines) {
    auto response = balancer[server].Get("/api/v1/runs/" + run);
    ASSERT_EQ(response.status, 200) << response.body;
    EXPECT_EQ(json::parse(response.body)["run"]["records"], l.size()) << run;
    EXPECT_EQ(Comparable(Alerts(balancer[server], run)), expected.at(run)) << run;
  }
}

// kill -9 of one of two servers while it stores a large batch: the batch is either committed or
// not at all, the trainer sends it again to the other server, and at the end every record is
// stored once and the alerts are those of one server.
TEST(SharedDatabase, KillNineOfOneServerMidRunLosesNoAcknowledgedRecord) {
  TempDir dir;
  const auto expected = AlertsOfOneServer(dir.File("single.db"), kRuns);
  std::map<std::string, std::vector<std::string>> lines;
  for (const std::string& run : kRuns) lines[run] = Lines(run);

  PostgresServer postgres;
  Servers servers(dir, postgres.CreateDatabase("killed"), 2);
  Balancer balancer(servers);
  SendAlternating(balancer, lines, 0, 3);

  // A batch of 20,000 records in flight on server 0 when it is killed.
  const std::string big = NdjsonSteps("big-batch", 0, 20'000);
  std::thread in_flight([&] {
    client::HttpClient client(servers[0].url());
    try {
      client.Post("/api/v1/steps", big, "application/x-ndjson");
    } catch (const client::HttpError&) {
      // Expected: the server died under it.
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  servers[0].Stop(SIGKILL, std::chrono::seconds(10));
  in_flight.join();
  EXPECT_EQ(balancer.PostUntilStored(1, big), 0) << "the surviving server takes it at once";

  SendAlternating(balancer, lines, 3, 1000);  // batches meant for server 0 go to server 1
  ExpectAllStored(balancer, lines, expected, 1);
  auto big_run = json::parse(balancer[1].Get("/api/v1/runs/big-batch").body);
  EXPECT_EQ(big_run["run"]["records"], 20000);
}

// A rolling upgrade of servers sharing one PostgreSQL database: a newer build migrates it while
// servers of this build run on it. After a migration declared compatible with this build, they
// keep serving and another one starts on the migrated database; after one that is not, a server
// of this build refuses to start, saying which versions, and leaves the database as it was.
TEST(SharedDatabase, RollingUpgradeKeepsCompatibleServersAndRefusesThoseLeftBehind) {
  TempDir dir;
  const std::string database = PostgresServer::Shared().CreateDatabase("rolling");
  ServerProcess running({.db = database, .stderr_log = dir.File("running.log")});
  client::HttpClient client(running.url());
  const auto post = [](client::HttpClient& to, std::int64_t first) {
    return to.Post("/api/v1/steps", NdjsonSteps("rolling", first, 100), "application/x-ndjson")
        .status;
  };
  ASSERT_EQ(post(client, 0), 200u);

  // The newer build: this build's migrations and one that only adds what this build never reads.
  std::vector<store::Migration> newer = store::BuiltinMigrations(store::Backend::kPostgres);
  const int built_for = newer.back().version;
  newer.push_back({built_for + 1, "run_notes", "ALTER TABLE runs ADD COLUMN note TEXT;"});
  newer.back().compatible_with = built_for;
  store::PostgresDatabase db(store::PostgresOptions{.uri = database});
  ASSERT_EQ(store::ApplyMigrations(db, newer), built_for + 1);

  EXPECT_EQ(post(client, 100), 200u) << "the running server keeps storing";
  ServerProcess started({.db = database, .stderr_log = dir.File("started.log")});
  client::HttpClient started_client(started.url());
  EXPECT_EQ(post(started_client, 200), 200u);
  const auto run = json::parse(started_client.Get("/api/v1/runs/rolling").body);
  EXPECT_EQ(run["run"]["records"], 300);
  EXPECT_EQ(json::parse(started_client.Get("/healthz").body)["schema_version"], built_for + 1);

  newer.push_back({built_for + 2, "run_owner",
                   "ALTER TABLE runs ADD COLUMN owner TEXT NOT NULL DEFAULT 'team';"});
  ASSERT_EQ(store::ApplyMigrations(db, newer), built_for + 2);
  try {
    ServerProcess left_behind({.db = database, .stderr_log = dir.File("left-behind.log")});
    ADD_FAILURE() << "a server built for " << built_for << " started on a v" << built_for + 2
                  << " database that is not compatible with it";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("servers built for versions before " +
                                               std::to_string(built_for + 2) + " cannot use it"));
  }
  EXPECT_EQ(store::SchemaVersion(db), built_for + 2);
  EXPECT_EQ(store::CompatibleVersion(db), built_for + 2);

  // The server that was running all along notices within about a second: it stores nothing more
  // on a schema it does not know (503: the trainer keeps its records and retries), and its health
  // check says so, naming the versions.
  const std::string why =
      "servers built for versions before " + std::to_string(built_for + 2) + " cannot use it";
  client::HttpResponse health = client.Get("/healthz");
  for (int attempt = 0; attempt < 100 && health.status == 200u; ++attempt) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    health = client.Get("/healthz");
  }
  EXPECT_EQ(health.status, 503u) << health.body;
  EXPECT_THAT(health.body, ::testing::HasSubstr(why));
  const client::HttpResponse refused =
      client.Post("/api/v1/steps", NdjsonSteps("rolling", 300, 100), "application/x-ndjson");
  EXPECT_EQ(refused.status, 503u) << refused.body;
  EXPECT_THAT(refused.body, ::testing::HasSubstr(why));
  std::unique_ptr<store::StatementImpl> stored = db.Prepare("SELECT COUNT(*) FROM steps");
  ASSERT_TRUE(stored->Step());
  EXPECT_EQ(stored->Int(0), 300) << "the refused batch stored nothing";
}

// PostgreSQL crashes (immediate shutdown) and restarts mid-run under two servers: while it is down
// the servers answer 503 (nothing stored: retry), the trainers' retries then succeed, and nothing
// is lost or counted twice.
TEST(SharedDatabase, PostgresRestartMidRunLosesAndDuplicatesNothing) {
  TempDir dir;
  const auto expected = AlertsOfOneServer(dir.File("single.db"), kRuns);
  std::map<std::string, std::vector<std::string>> lines;
  for (const std::string& run : kRuns) lines[run] = Lines(run);

  PostgresServer postgres;
  Servers servers(dir, postgres.CreateDatabase("restarted"), 2);
  Balancer balancer(servers);
  SendAlternating(balancer, lines, 0, 3);

  postgres.Stop(SIGQUIT);
  for (std::size_t server : {0u, 1u}) {
    auto response = balancer[server].Post("/api/v1/steps", NdjsonSteps("while-down", 0, 10),
                                          "application/x-ndjson");
    EXPECT_EQ(response.status, 503u) << response.body;
    EXPECT_EQ(json::parse(response.body)["error"]["code"], "storage_unavailable") << response.body;
    EXPECT_EQ(balancer[server].Get("/api/v1/runs").status, 503u);
  }
  postgres.Start();

  SendAlternating(balancer, lines, 3, 1000);
  ExpectAllStored(balancer, lines, expected, 0);
  ExpectAllStored(balancer, lines, expected, 1);
  EXPECT_EQ(balancer[0].Get("/api/v1/runs/while-down").status, 404u)
      << "the batches answered 503 stored nothing";
}

// docker/nginx/lossguard.conf, the load balancer docker-compose.postgres.yml ships, run by Debian's
// nginx on loopback: its upstreams are the test's servers, its listen port a free one.
class Nginx {
 public:
  Nginx(const TempDir& dir, Servers& servers) : port_(FreeLoopbackPort()) {
    std::ifstream in(std::filesystem::path(LOSSGUARD_SOURCE_DIR) / "docker/nginx/lossguard.conf");
    std::string conf((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    for (std::size_t i = 0; i < servers.size(); ++i) {
      const std::string name = "lossguard-" + std::to_string(i + 1) + ":8080";
      const std::string url = servers[i].url();  // http://127.0.0.1:PORT
      const std::size_t at = conf.find(name);
      if (at == std::string::npos) throw std::runtime_error("lossguard.conf has no " + name);
      conf.replace(at, name.size(), url.substr(url.find("//") + 2));
    }
    const std::size_t listen = conf.find("listen 8080;");
    if (listen == std::string::npos) throw std::runtime_error("lossguard.conf: no listen 8080");
    conf.replace(listen, 12, "listen 127.0.0.1:" + std::to_string(port_) + ";");
    const std::filesystem::path prefix = dir.File("nginx");
    std::filesystem::create_directories(prefix / "logs");
    std::ofstream(prefix / "nginx.conf")
        << "daemon off;\nmaster_process off;\nerror_log " << (prefix / "logs/error.log").string()
        << ";\npid " << (prefix / "nginx.pid").string() << ";\nevents {}\nhttp {\naccess_log off;\n"
        << "client_body_temp_path " << prefix.string() << ";\n"
        << conf << "}\n";
    process_ = std::make_unique<BackgroundProcess>(std::vector<std::string>{
        "/usr/sbin/nginx", "-p", prefix.string(), "-c", (prefix / "nginx.conf").string()});
    const auto deadline = Clock::now() + std::chrono::seconds(20);
    while (true) {
      try {
        if (client::HttpClient(url()).Get("/healthz").status == 200) break;
      } catch (const client::HttpError&) {
      }
      if (Clock::now() > deadline || !process_->Running())
        throw std::runtime_error("nginx did not come up: " + process_->LogText());
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  int port_;
  std::unique_ptr<BackgroundProcess> process_;
};

// The shipped nginx configuration in front of two servers, one of which dies (kill -9) mid-run:
// every batch the trainers send through nginx is answered 200 all the same (nginx sends a batch
// the dead server did not take to the other), and the alerts are those of one server.
TEST(SharedDatabase, TheShippedNginxConfigurationRoutesAroundADeadServer) {
  TempDir dir;
  const auto expected = AlertsOfOneServer(dir.File("single.db"), kRuns);
  std::map<std::string, std::vector<std::string>> lines;
  for (const std::string& run : kRuns) lines[run] = Lines(run);

  PostgresServer postgres;
  Servers servers(dir, postgres.CreateDatabase("balanced"), 2);
  Nginx nginx(dir, servers);
  client::HttpClient trainer(nginx.url());
  constexpr std::size_t kSmallBatch = 10;
  std::size_t batches = 0, sent = 0;
  for (const auto& [run, l] : lines) batches += (l.size() + kSmallBatch - 1) / kSmallBatch;
  for (const auto& [run, l] : lines) {
    for (std::size_t b = 0; b * kSmallBatch < l.size(); ++b) {
      if (++sent == batches / 3) servers[0].Stop(SIGKILL, std::chrono::seconds(10));
      auto response = trainer.Post("/api/v1/steps", Body(l, b * kSmallBatch, (b + 1) * kSmallBatch),
                                   "application/x-ndjson");
      ASSERT_EQ(response.status, 200) << run << " batch " << b << ": " << response.body;
    }
  }
  ASSERT_GT(batches, 60u);
  Balancer survivor(servers);
  ExpectAllStored(survivor, lines, expected, 1);
}

}  // namespace shared_database_test
}  // namespace lossguard::testing
