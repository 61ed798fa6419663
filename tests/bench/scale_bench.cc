// Scale benchmark against the real lossguard-server binary over loopback HTTP, one fresh server
// per phase:
// 1. World size: the same number of records posted as (step, rank) records of a job with world
//    size 1, 64, 1024, 4096 (batches of `batch`, in step-major order as a job's ranks report);
//    records/s, and each as a ratio to world size 1 measured in the same run.
// 2. Busy writer: `writers` clients post 7 MB batches (16 steps x 4,000 ranks) while one client
//    times GET /healthz and a downsampled steps query; p50/p99 of those reads.
// 3. Tail: downsampled queries of a 1,024-rank job at its freshest steps (read from the steps).
// 4. Many runs: `runs` runs of one record each, then GET /api/v1/runs (one page, and every page).
//   build/tests/bench/scale_bench            (defaults: the figures in README.md)
#include <signal.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "bench_http.h"
#include "lossguard/client/http_client.h"
#include "process_cpu.h"
#include "support/processes.h"

namespace {

using Clock = std::chrono::steady_clock;
using lossguard::bench::CheckOk;
using lossguard::bench::Percentile;
using lossguard::bench::PostConcurrently;
using lossguard::client::HttpClient;
using lossguard::testing::ServerProcess;

std::string Record(const std::string& run, std::int64_t step, std::int64_t rank,
                   std::int64_t world_size) {
  double loss =
      2.0 + 8.0 / static_cast<double>(step / 100 + 1) + 0.001 * static_cast<double>(rank % 7);
  return R"({"run":")" + run + R"(","step":)" + std::to_string(step) + R"(,"rank":)" +
         std::to_string(rank) + R"(,"world_size":)" + std::to_string(world_size) +
         R"(,"ga_steps":8,"micro_batch_size":4,"loss":)" + std::to_string(loss) +
         R"(,"ref_loss":)" + std::to_string(loss) +
         R"(,"grad_norm":1.25,"tokens":16384,"vocab_size":32000,"lr":0.0003})" + "\n";
}

// Records number `first` .. `first + count - 1` of a job, in step-major order.
std::string Body(const std::string& run, std::int64_t first, std::int64_t count,
                 std::int64_t world_size) {
  std::string out;
  out.reserve(static_cast<std::size_t>(count) * 220);
  for (std::int64_t i = first; i < first + count; ++i)
    out += Record(run, i / world_size, i % world_size, world_size);
  return out;
}

std::filesystem::path TempDir() {
  std::string pattern =
      (std::filesystem::temp_directory_path() / "lossguard-scale-XXXXXX").string();
  if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  return pattern;
}

void WorldSizes(const std::vector<std::int64_t>& world_sizes, std::int64_t records,
                std::int64_t batch, int clients, const std::string& analyzers) {
  double baseline = 0;
  for (std::int64_t world_size : world_sizes) {
    std::filesystem::path dir = TempDir();
    ServerProcess server({.db = dir / "scale.db", .extra_args = {"--analyzers", analyzers}});
    std::vector<std::string> bodies;
    for (std::int64_t first = 0; first < records; first += batch)
      bodies.push_back(Body("ws", first, std::min(batch, records - first), world_size));
    const double cpu_before = lossguard::bench::ProcessTreeCpuSeconds(server.pid());
    double seconds = PostConcurrently(server.url(), bodies, clients);
    // The server's CPU per record: less at the mercy of a shared machine than the wall clock.
    const double cpu_us = (lossguard::bench::ProcessTreeCpuSeconds(server.pid()) - cpu_before) *
                          1e6 / static_cast<double>(records);
    double rate = static_cast<double>(records) / seconds;
    if (baseline == 0) baseline = rate;
    std::printf(
        "world size %5lld: %lld records in %.2f s = %.0f records/s (%.2f of world size %lld; "
        "batches of %lld, %d clients, --analyzers %s); server CPU %.2f us/record\n",
        static_cast<long long>(world_size), static_cast<long long>(records), seconds, rate,
        rate / baseline, static_cast<long long>(world_sizes.front()), static_cast<long long>(batch),
        clients, analyzers.c_str(), cpu_us);
    std::fflush(stdout);
    server.Stop(SIGTERM, std::chrono::seconds(60));
    std::filesystem::remove_all(dir);
  }
}

void BusyWriter(int writers, int large_batches, int ranks, int steps_per_batch) {
  std::filesystem::path dir = TempDir();
  ServerProcess server({.db = dir / "busy.db"});
  CheckOk(HttpClient(server.url())
              .Post("/api/v1/steps", Body("small", 0, 2000, 1), "application/x-ndjson"));
  std::vector<std::string> bodies;
  for (int b = 0; b < large_batches; ++b)
    bodies.push_back(Body("large", static_cast<std::int64_t>(b) * steps_per_batch * ranks,
                          static_cast<std::int64_t>(steps_per_batch) * ranks, ranks));
  std::atomic<bool> done = false;
  std::vector<double> health_ms, query_ms;
  std::thread reader([&] {
    HttpClient client(server.url());
    while (!done) {
      auto t0 = Clock::now();
      CheckOk(client.Get("/healthz"));
      health_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
      t0 = Clock::now();
      CheckOk(client.Get("/api/v1/runs/small/steps?max_points=500"));
      query_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  });
  double seconds = 0;
  try {
    seconds = PostConcurrently(server.url(), bodies, writers);
  } catch (...) {
    done = true;
    reader.join();
    throw;
  }
  done = true;
  reader.join();
  std::printf(
      "while %d clients wrote %d batches of %.1f MB (%d steps x %d ranks) in %.2f s: /healthz p50 "
      "%.2f ms p99 %.2f ms max %.2f ms; steps?max_points=500 p50 %.2f ms p99 %.2f ms (%zu "
      "requests each)\n",
      writers, large_batches, static_cast<double>(bodies.front().size()) / 1e6, steps_per_batch,
      ranks, seconds, Percentile(health_ms, 0.5), Percentile(health_ms, 0.99),
      Percentile(health_ms, 1.0), Percentile(query_ms, 0.5), Percentile(query_ms, 0.99),
      health_ms.size());
  std::fflush(stdout);
  server.Stop(SIGTERM, std::chrono::seconds(60));
  std::filesystem::remove_all(dir);
}

// Downsampled queries of a job at its freshest steps, where the level-1 blocks settled but waiting
// for their group to be written are read from the steps table: every rank, then one. The default
// 208 steps (0-207) is where the most blocks wait: their group of four is written with step 208.
void TailQueries(std::int64_t world_size, std::int64_t steps, int repeats) {
  std::filesystem::path dir = TempDir();
  ServerProcess server({.db = dir / "tail.db"});
  std::vector<std::string> bodies;
  const std::int64_t records = world_size * steps;
  for (std::int64_t first = 0; first < records; first += 1000)
    bodies.push_back(
        Body("tail", first, std::min<std::int64_t>(1000, records - first), world_size));
  PostConcurrently(server.url(), bodies, 2);
  HttpClient client(server.url());
  auto timed = [&](const std::string& target) {
    std::vector<double> ms;
    for (int i = 0; i < repeats; ++i) {
      auto t0 = Clock::now();
      auto answer = client.Get(target);
      ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
      CheckOk(answer);
    }
    return ms;
  };
  const auto all = timed("/api/v1/runs/tail/steps?max_points=10");
  const auto one = timed("/api/v1/runs/tail/steps?max_points=10&rank=3");
  std::printf(
      "steps?max_points=10 of a %lld-rank job at step %lld: every rank p50 %.1f ms p99 %.1f ms; "
      "one rank p50 %.2f ms p99 %.2f ms (%d requests each)\n",
      static_cast<long long>(world_size), static_cast<long long>(steps - 1), Percentile(all, 0.5),
      Percentile(all, 0.99), Percentile(one, 0.5), Percentile(one, 0.99), repeats);
  std::fflush(stdout);
  server.Stop(SIGTERM, std::chrono::seconds(60));
  std::filesystem::remove_all(dir);
}

void ManyRuns(std::int64_t runs, int repeats) {
  std::filesystem::path dir = TempDir();
  ServerProcess server({.db = dir / "runs.db"});
  std::vector<std::string> bodies;
  for (std::int64_t first = 0; first < runs; first += 5000) {
    std::string body;
    for (std::int64_t i = first; i < std::min(runs, first + 5000); ++i)
      body += Record("run-" + std::to_string(i), 0, 0, 1);
    bodies.push_back(std::move(body));
  }
  PostConcurrently(server.url(), bodies, 2);
  HttpClient client(server.url());
  std::vector<double> page_ms, all_ms;
  std::size_t page_bytes = 0, listed = 0;
  for (int i = 0; i < repeats; ++i) {
    auto t0 = Clock::now();
    auto page = client.Get("/api/v1/runs");
    page_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    CheckOk(page);
    page_bytes = page.body.size();
  }
  {
    auto t0 = Clock::now();
    std::string target = "/api/v1/runs?limit=1000";
    listed = 0;
    while (true) {
      auto page = client.Get(target);
      CheckOk(page);
      auto body = nlohmann::json::parse(page.body);
      listed += body["runs"].size();
      if (body["next"].is_null()) break;
      target = "/api/v1/runs?limit=1000&after=" + body["next"].get<std::string>();
    }
    all_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  }
  std::printf(
      "GET /api/v1/runs with %lld runs: first page p50 %.2f ms p99 %.2f ms (%zu bytes); all %zu "
      "runs in pages of 1000: %.0f ms\n",
      static_cast<long long>(runs), Percentile(page_ms, 0.5), Percentile(page_ms, 0.99), page_bytes,
      listed, all_ms.front());
  server.Stop(SIGTERM, std::chrono::seconds(60));
  std::filesystem::remove_all(dir);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"lossguard scale benchmark (real server, real HTTP on loopback)"};
  std::vector<std::int64_t> world_sizes = {1, 64, 1024, 4096};
  std::int64_t records = 400'000, batch = 1000, runs = 100'000;
  int clients = 2, writers = 2, large_batches = 6, ranks = 4000, steps_per_batch = 16, repeats = 20;
  std::int64_t tail_ranks = 1024, tail_steps = 208;
  std::string analyzers = "on", phases = "world,busy,tail,runs";
  app.add_option("--world-sizes", world_sizes, "world sizes compared (the first is the baseline)")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1048576}));
  app.add_option("--records", records, "records posted per world size")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1000000000}));
  app.add_option("--batch", batch, "records per request")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1000000}));
  app.add_option("--clients", clients, "concurrent clients")->check(CLI::Range(1, 256));
  app.add_option("--analyzers", analyzers)->check(CLI::IsMember({"on", "off"}));
  app.add_option("--writers", writers, "clients posting large batches in the busy phase")
      ->check(CLI::Range(1, 256));
  app.add_option("--large-batches", large_batches, "large batches posted in the busy phase")
      ->check(CLI::Range(1, 100000));
  app.add_option("--ranks", ranks, "ranks per large batch")->check(CLI::Range(1, 1048576));
  app.add_option("--steps-per-batch", steps_per_batch, "steps per large batch")
      ->check(CLI::Range(1, 100000));
  app.add_option("--runs", runs, "runs in the run-list phase")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{100000000}));
  app.add_option("--repeats", repeats, "timed GET /api/v1/runs")->check(CLI::Range(1, 100000));
  app.add_option("--tail-ranks", tail_ranks, "ranks of the job in the tail phase")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1048576}));
  app.add_option("--tail-steps", tail_steps, "steps of the job in the tail phase")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1000000}));
  app.add_option("--phases", phases, "comma-separated: world, busy, tail, runs");
  CLI11_PARSE(app, argc, argv);
  try {
    if (phases.find("world") != std::string::npos)
      WorldSizes(world_sizes, records, batch, clients, analyzers);
    if (phases.find("busy") != std::string::npos)
      BusyWriter(writers, large_batches, ranks, steps_per_batch);
    if (phases.find("tail") != std::string::npos) TailQueries(tail_ranks, tail_steps, repeats);
    if (phases.find("runs") != std::string::npos) ManyRuns(runs, repeats);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "scale_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
