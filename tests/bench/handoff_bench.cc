// How long RecordStream::Submit() takes the training thread: p50/p99/p99.9/max over `records`
// back-to-back hand-offs, with the server live, down with a spool, and down without one.
//   build/tests/bench/handoff_bench [--records 200000] [--interval-us 0]
#include <signal.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>

#include "lossguard/collector/record_stream.h"
#include "support/processes.h"

namespace {

using Clock = std::chrono::steady_clock;
using lossguard::collector::RecordStream;
using lossguard::collector::RecordStreamOptions;

lossguard::wire::StepRecord Record(std::int64_t step) {
  lossguard::wire::StepRecord r;
  r.run = "handoff";
  r.step = step;
  r.ga_steps = 8;
  r.micro_batch_size = 4;
  r.loss = 2.5;
  r.ref_loss = 2.5;
  r.grad_norm = 1.0;
  r.tokens = 16384;
  r.micro.assign(8, {2.5, 2048, 5120.0});
  return r;
}

void Measure(const char* scenario, RecordStreamOptions options, std::int64_t records,
             std::int64_t interval_us) {
  options.warn([](std::string_view) {});
  options.drain_timeout(std::chrono::milliseconds(0));
  std::vector<double> ns;
  ns.reserve(static_cast<std::size_t>(records));
  std::uint64_t dropped = 0;
  {
    RecordStream stream(options);
    for (std::int64_t step = 0; step < records; ++step) {
      // The record is built, and the training step between two hand-offs runs (busy, like compute),
      // before the clock starts: only Submit() is timed. interval_us 0 = back to back.
      lossguard::wire::StepRecord record = Record(step);
      for (auto until = Clock::now() + std::chrono::microseconds(interval_us);
           Clock::now() < until;) {
      }
      auto t0 = Clock::now();
      stream.Submit(std::move(record));
      ns.push_back(std::chrono::duration<double, std::nano>(Clock::now() - t0).count());
    }
    dropped = stream.stats().dropped;
  }
  std::sort(ns.begin(), ns.end());
  auto at = [&](double p) {
    return ns[std::min(ns.size() - 1, static_cast<std::size_t>(p * ns.size()))] / 1000;
  };
  std::printf(
      "%-34s p50 %.2f us  p99 %.2f us  p99.9 %.2f us  max %.0f us  (%zu hand-offs, %llu dropped)\n",
      scenario, at(0.5), at(0.99), at(0.999), ns.back() / 1000, ns.size(),
      static_cast<unsigned long long>(dropped));
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"RecordStream hand-off latency"};
  std::int64_t records = 200'000, interval_us = 0;
  app.add_option("--records", records, "hand-offs per scenario");
  app.add_option("--interval-us", interval_us,
                 "busy time between hand-offs (a training step); 0 = back to back");
  CLI11_PARSE(app, argc, argv);
  try {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "lossguard-handoff-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    std::filesystem::path dir = pattern;
    RecordStreamOptions options;
    options.queue_capacity(static_cast<std::size_t>(records) + 1);
    {
      lossguard::testing::ServerProcess server(
          {.db = dir / "db", .extra_args = {"--sync", "normal"}});
      options.server_url(server.url());
      Measure("server live", options, records, interval_us);
      server.Stop(SIGTERM, std::chrono::seconds(30));
    }
    // The stopped server's port: nothing listens there now.
    options.spool_path((dir / "spool.ndjson").string());
    Measure("server down, spooling to disk", options, records, interval_us);
    options.spool_path().clear();
    Measure("server down, no spool", options, records, interval_us);
    std::filesystem::remove_all(dir);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "handoff_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
