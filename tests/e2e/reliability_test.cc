// Attacks and loads against the real server binary over real HTTP on loopback: descriptor
// exhaustion, connection caps, huge step numbers, reads during a large write, run-list pages, weak
// tokens, a full disk.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "e2e/e2e_util.h"
#include "e2e/raw_http.h"
#include "lossguard/client/http_client.h"
#include "support/processes.h"
#include "support/records.h"
#include "support/temp_dir.h"
#include "support/tiny_file_system.h"

namespace lossguard::testing {
namespace reliability_test {

using client::HttpClient;
using nlohmann::json;
using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

std::string Nested(std::size_t depth) { return std::string(depth, '[') + std::string(depth, ']'); }

// CPU seconds the process has used (user + system), from /proc.
double CpuSeconds(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  std::istringstream fields(text.substr(text.rfind(')') + 2));
  std::string field;
  double utime = 0, stime = 0;
  for (int i = 3; i <= 15 && fields >> field; ++i) {
    if (i == 14) utime = std::stod(field);
    if (i == 15) stime = std::stod(field);
  }
  return (utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

TEST(Reliability, AtTheDescriptorLimitConnectionsAreCappedAndTheStoreKeepsItsDescriptors) {
  TempDir dir;
  // --max-connections far above what 256 descriptors hold: the server lowers it, keeping what its
  // databases need, instead of accepting until opening a database connection fails.
  ServerProcess server({.db = dir.File("db"),
                        .extra_args = {"--max-connections", "1000", "--threads", "2"},
                        .file_limit = 256});
  EXPECT_THAT(server.StderrText(), HasSubstr("--max-connections 1000 lowered to"));
  std::vector<std::unique_ptr<HttpClient>> kept;
  for (int i = 0; i < 4; ++i) {
    kept.push_back(std::make_unique<HttpClient>(server.url()));
    ASSERT_EQ(kept.back()->Get("/healthz").status, 200u);
  }
  std::vector<std::unique_ptr<RawConnection>> flood;
  for (int i = 0; i < 400; ++i) flood.push_back(std::make_unique<RawConnection>(server.url()));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const double cpu_before = CpuSeconds(server.pid());
  std::this_thread::sleep_for(std::chrono::seconds(2));
  const double cpu_used = CpuSeconds(server.pid()) - cpu_before;
  EXPECT_LT(cpu_used, 0.5) << "the accept loop must not spin at the cap";

  // Every kept connection writes and reads at once: each handler needs a database connection of
  // its own, and gets one.
  std::vector<std::thread> workers;
  std::atomic<int> failures{0};
  std::mutex failure_mutex;
  std::string first_failure;
  for (int i = 0; i < 4; ++i) {
    workers.emplace_back([&, i] {
      HttpClient& client = *kept[static_cast<std::size_t>(i)];
      const std::string run = "capped-" + std::to_string(i);
      for (int round = 0; round < 10; ++round) {
        std::vector<client::HttpResponse> answers = {
            client.Post("/api/v1/steps", NdjsonSteps(run, round * 5, 5), "application/x-ndjson"),
            client.Get("/api/v1/runs/" + run + "/steps"), client.Get("/api/v1/alerts"),
            client.Get("/api/v1/runs")};
        for (const auto& answer : answers) {
          if (answer.status == 200) continue;
          std::lock_guard lock(failure_mutex);
          if (failures++ == 0) first_failure = std::to_string(answer.status) + " " + answer.body;
        }
      }
    });
  }
  for (std::thread& worker : workers) worker.join();
  EXPECT_EQ(failures.load(), 0) << first_failure;
  EXPECT_THAT(server.StderrText(), HasSubstr("refused")) << "connections beyond the cap";
  EXPECT_EQ(server.StderrText().find("cannot open database"), std::string::npos)
      << server.StderrText();

  flood.clear();  // the cap frees up: new connections are served again
  bool served = false;
  for (int attempt = 0; attempt < 50 && !served; ++attempt) {
    served =
        HttpClient(server.url(), {.timeout = std::chrono::seconds(2)}).Get("/healthz").status ==
        200;
    if (!served) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(served);
}

TEST(Reliability, AnOpenFileLimitTooLowToServeIsRefusedAtStart) {
  TempDir dir;
  CommandResult result =
      RunCommand({"/bin/sh", "-c", "ulimit -n 40 && exec \"$0\" \"$@\"", LOSSGUARD_SERVER_BINARY,
                  "--db", dir.File("db").string(), "--listen", "127.0.0.1:0", "--threads", "2"},
                 std::chrono::seconds(10));
  EXPECT_NE(result.exit_code, 0);
  EXPECT_THAT(result.err, HasSubstr("open-file limit is 40, too low to serve"));
}

TEST(Reliability, BeyondMaxConnectionsNewConnectionsGet503) {
  TempDir dir;
  ServerProcess server({.db = dir.File("db"), .extra_args = {"--max-connections", "3"}});
  std::vector<std::unique_ptr<HttpClient>> open;
  for (int i = 0; i < 3; ++i) {
    open.push_back(std::make_unique<HttpClient>(server.url()));
    ASSERT_EQ(open.back()->Get("/healthz").status, 200u);
  }
  auto refused = HttpClient(server.url()).Get("/healthz");
  EXPECT_EQ(refused.status, 503u);
  EXPECT_THAT(refused.body, HasSubstr("too_many_connections"));
  EXPECT_EQ(open[0]->Get("/healthz").status, 200u) << "the open connections are still served";
  open.pop_back();  // one closes: a new connection gets in
  bool served = false;
  for (int attempt = 0; attempt < 50 && !served; ++attempt) {
    served = HttpClient(server.url()).Get("/healthz").status == 200;
    if (!served) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(served);
}

TEST(Reliability, StepNumbersAreBoundedAndQueriesStayDownsampled) {
  TempDir dir;
  ServerProcess server({.db = dir.File("db")});
  HttpClient client(server.url());
  auto too_big = client.Post("/api/v1/steps", MinimalRecord("big", 9223372036854775807LL) + "\n",
                             "application/x-ndjson");
  EXPECT_EQ(too_big.status, 400u);
  EXPECT_THAT(too_big.body, HasSubstr("step must be <= 9007199254740991"));
  std::string body;
  for (int step = 0; step < 3000; ++step) body += MinimalRecord("big", step) + "\n";
  body += MinimalRecord("big", 9007199254740991LL) + "\n";
  ASSERT_EQ(client.Post("/api/v1/steps", body, "application/x-ndjson").status, 200u);
  auto steps = client.Get("/api/v1/runs/big/steps?max_points=100");
  ASSERT_EQ(steps.status, 200u) << steps.body;
  json series = Body(steps);
  std::size_t buckets = 0;
  for (const json& rank : series["ranks"]) buckets += rank.at("step").size();
  EXPECT_GT(buckets, 0u);
  EXPECT_LE(buckets, 100u) << "max_points holds over the widest step range";
  EXPECT_LT(steps.body.size(), 100'000u);
  auto full_range =
      client.Get("/api/v1/runs/big/steps?from=0&to=9223372036854775807&max_points=10");
  EXPECT_EQ(full_range.status, 200u) << full_range.body;
}

TEST(Reliability, ReadsAreAnsweredWhileALargeBatchIsWritten) {
  TempDir dir;
  ServerProcess server({.db = dir.File("db")});
  HttpClient client(server.url());
  ASSERT_EQ(
      client.Post("/api/v1/steps", NdjsonSteps("small", 0, 100), "application/x-ndjson").status,
      200u);
  // 16 steps x 4,000 ranks, about 8 MB: long enough to write that reads can overlap it.
  std::string large;
  for (int step = 0; step < 16; ++step)
    for (int rank = 0; rank < 4000; ++rank)
      large += R"({"run":"large","step":)" + std::to_string(step) + R"(,"rank":)" +
               std::to_string(rank) +
               R"(,"world_size":4000,"ga_steps":1,"micro_batch_size":8,"loss":2.5,"grad_norm":1})" +
               "\n";
  std::atomic<bool> written = false;
  std::atomic<int> reads_during_write = 0;
  std::thread writer([&] {
    HttpClient writer_client(server.url(), {.timeout = std::chrono::seconds(120)});
    auto response = writer_client.Post("/api/v1/steps", large, "application/x-ndjson");
    EXPECT_EQ(response.status, 200u) << response.body.substr(0, 200);
    written = true;
  });
  std::thread second_writer([&] {
    HttpClient writer_client(server.url(), {.timeout = std::chrono::seconds(120)});
    auto response = writer_client.Post("/api/v1/steps", large, "application/x-ndjson");
    EXPECT_EQ(response.status, 200u);
  });
  auto deadline = Clock::now() + std::chrono::seconds(60);
  while (!written && Clock::now() < deadline) {
    EXPECT_EQ(client.Get("/healthz").status, 200u);
    EXPECT_EQ(client.Get("/api/v1/runs/small/steps?max_points=50").status, 200u);
    if (!written) ++reads_during_write;
  }
  writer.join();
  second_writer.join();
  EXPECT_GT(reads_during_write.load(), 0)
      << "both I/O threads must stay free for reads while two large batches are written";
  EXPECT_EQ(StoredRecords(client, "large"), 64'000);
}

TEST(Reliability, RunListIsPagedAndFiltered) {
  TempDir dir;
  ServerProcess server({.db = dir.File("db")});
  HttpClient client(server.url());
  std::string body;
  for (int i = 0; i < 250; ++i)
    body += MinimalRecord("team-a." + std::to_string(1000 + i), 0) + "\n";
  for (int i = 0; i < 20; ++i) body += MinimalRecord("team-b." + std::to_string(i), 0) + "\n";
  ASSERT_EQ(client.Post("/api/v1/steps", body, "application/x-ndjson").status, 200u);

  json first = Body(client.Get("/api/v1/runs"));
  EXPECT_EQ(first["runs"].size(), 100u) << "the default page";
  std::set<std::string> seen;
  std::string target = "/api/v1/runs?limit=120&prefix=team-a.";
  int pages = 0;
  while (true) {
    json page = Body(client.Get(target));
    ++pages;
    std::string previous;
    for (const json& run : page["runs"]) {
      std::string name = run["run"];
      EXPECT_TRUE(name.starts_with("team-a.")) << name;
      EXPECT_GT(name, previous);
      previous = name;
      EXPECT_TRUE(seen.insert(name).second) << "listed twice: " << name;
    }
    if (page["next"].is_null()) break;
    target = "/api/v1/runs?limit=120&prefix=team-a.&after=" + page["next"].get<std::string>();
  }
  EXPECT_EQ(seen.size(), 250u);
  EXPECT_EQ(pages, 3);
  EXPECT_EQ(Body(client.Get("/api/v1/runs?active_since=4102444800"))["runs"].size(), 0u)
      << "no run was active in 2100";
  EXPECT_EQ(Body(client.Get("/api/v1/runs?active_since=0&prefix=team-b."))["runs"].size(), 20u);
  EXPECT_EQ(client.Get("/api/v1/runs?limit=0").status, 400u);
  EXPECT_EQ(client.Get("/api/v1/runs?limit=1001").status, 400u);
  EXPECT_EQ(client.Get("/api/v1/runs?active_since=soon").status, 400u);
}

TEST(Reliability, WeakTokensAreWarnedAbout) {
  TempDir dir;
  std::ofstream(dir.File("token")) << "x\n";
  ServerProcess weak(
      {.db = dir.File("db"), .extra_args = {"--token-file", dir.File("token").string()}});
  EXPECT_THAT(weak.StderrText(), HasSubstr("the token is easy to guess (1 characters"));
  std::ofstream(dir.File("strong")) << "6f1c0e9a4b7d2e8f5a3c1b0d9e7f6a5b\n";
  ServerProcess strong(
      {.db = dir.File("db2"), .extra_args = {"--token-file", dir.File("strong").string()}});
  EXPECT_THAT(strong.StderrText(), ::testing::Not(HasSubstr("easy to guess")));
}

TEST(Reliability, AFullDiskIsNamedAtStartAndOnIngestAndLosesNothingAcknowledged) {
  TempDir dir;
  TinyFileSystem disk(dir.File("disk"), "2m");
  if (!disk.mounted()) GTEST_SKIP() << "mounting a tmpfs needs root";
  disk.Fill();
  try {
    ServerProcess refused({.db = dir.File("disk") / "db", .stderr_log = dir.File("refused.log")});
    ADD_FAILURE() << "the server started on a full disk";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), HasSubstr("the disk is full"));
  }
  disk.Free();
  ServerProcess server({.db = dir.File("disk") / "db",
                        .extra_args = {"--sync", "full"},
                        .stderr_log = dir.File("server.log")});
  HttpClient client(server.url());
  ASSERT_EQ(
      client.Post("/api/v1/steps", NdjsonSteps("disk", 0, 100), "application/x-ndjson").status,
      200u);
  disk.Fill();
  std::int64_t acknowledged = 100;
  bool refused = false;
  for (int batch = 1; batch < 200 && !refused; ++batch) {
    auto response =
        client.Post("/api/v1/steps", NdjsonSteps("disk", batch * 100, 100), "application/x-ndjson");
    if (response.status == 200) {
      acknowledged += 100;
      continue;
    }
    EXPECT_EQ(response.status, 500u);
    EXPECT_THAT(response.body, HasSubstr("the disk is full"));
    refused = true;
  }
  EXPECT_TRUE(refused) << "a 2 MB file system must fill up";
  EXPECT_EQ(client.Get("/healthz").status, 200u) << "the server stays up";
  disk.Free();
  EXPECT_EQ(
      client.Post("/api/v1/steps", NdjsonSteps("disk", 50'000, 10), "application/x-ndjson").status,
      200u)
      << "writes work again once there is space";
  EXPECT_EQ(StoredRecords(client, "disk"), acknowledged + 10)
      << "every acknowledged record is there";
}

}  // namespace reliability_test
}  // namespace lossguard::testing
