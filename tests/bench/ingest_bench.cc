// Ingest and query benchmark against the real lossguard-server binary over loopback HTTP.
//   build/tests/bench/ingest_bench            (defaults: the figures in README.md)
// 1. Throughput: `clients` threads post batches of `batch` records (NDJSON, durable acks: --sync
//    full) into one run until `records` are stored; records/s over the whole run.
// 2. Latency: one client posts `latency-batches` batches of 100 records; p50/p99 per request.
// 3. Query: GET /steps?max_points=2000 over the whole run (1,000,000 steps by default); p50/p99.
// --backend postgresql runs the servers on a PostgreSQL server the benchmark starts (fsync on, as
// SQLite's --sync full), --servers N puts N lossguard servers on that one database (clients spread
// over them). The CPU time each side spent per record in the throughput phase is printed too.
#include <libpq-fe.h>
#include <signal.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>

#include "bench_http.h"
#include "lossguard/client/http_client.h"
#include "process_cpu.h"
#include "support/postgres_server.h"
#include "support/processes.h"

namespace {

using Clock = std::chrono::steady_clock;
using lossguard::bench::CheckOk;
using lossguard::bench::Percentile;
using lossguard::testing::ServerProcess;

// The records' shape (--shape): "minimal", the seven fields a trainer must or usually sends;
// "small", ten (the default, the figures in README.md); "micro", thirteen, with eight micro-batches
// of {loss, tokens, loss_sum} (float32 values) on one rank of eight.
std::string Body(const std::string& shape, const std::string& run, std::int64_t first,
                 std::int64_t count) {
  std::string out;
  out.reserve(static_cast<std::size_t>(count) * (shape == "micro" ? 900 : 200));
  for (std::int64_t step = first; step < first + count; ++step) {
    const double loss = 2.0 + 8.0 / static_cast<double>(step / 100 + 1);
    out += R"({"run":")" + run + R"(","step":)" + std::to_string(step);
    if (shape == "minimal") {
      out += R"(,"ga_steps":8,"micro_batch_size":4,"loss":)" + std::to_string(loss) +
             R"(,"grad_norm":1.25,"tokens":16384})" + "\n";
      continue;
    }
    out += R"(,"ga_steps":8,"micro_batch_size":4,"loss":)" + std::to_string(loss) +
           R"(,"ref_loss":)" + std::to_string(loss) +
           R"(,"grad_norm":1.25,"tokens":16384,"vocab_size":32000,"lr":0.0003)";
    if (shape == "micro") {
      // Micro-batch values as a trainer sends them: float32 tensors' values (`loss.item()`),
      // written in full (17 digits, as Python's json writes a float).
      const auto float32_text = [](double value) {
        char text[32];
        std::snprintf(text, sizeof text, "%.17g", static_cast<double>(static_cast<float>(value)));
        return std::string(text);
      };
      out += R"(,"rank":3,"world_size":8,"micro":[)";
      for (int m = 0; m < 8; ++m) {
        const std::int64_t tokens = 2000 + 37 * ((step + m) % 11);
        const double micro_loss = loss * (1 + 0.01 * m);
        out += std::string(m == 0 ? "" : ",") + R"({"loss":)" + float32_text(micro_loss) +
               R"(,"tokens":)" + std::to_string(tokens) + R"(,"loss_sum":)" +
               float32_text(micro_loss * static_cast<double>(tokens)) + "}";
      }
      out += "]";
    }
    out += "}\n";
  }
  return out;
}

// Bytes the database takes on disk, with each table's share (indexes included) where the engine
// tells: SQLite's file once a clean stop has folded the WAL into it (dbstat, through Debian's
// sqlite3 shell); PostgreSQL's database directory (pg_database_size) before it stops.
struct DiskUse {
  double total = 0;
  std::string tables;
};

DiskUse SqliteDiskUse(const std::filesystem::path& file) {
  DiskUse use;
  for (const char* suffix : {"", "-wal", "-shm"}) {
    std::error_code ec;
    const auto size = std::filesystem::file_size(file.string() + suffix, ec);
    if (!ec) use.total += static_cast<double>(size);
  }
  const std::string command = "sqlite3 -readonly '" + file.string() +
                              "' \"SELECT name, SUM(pgsize) FROM dbstat GROUP BY name ORDER BY 2 "
                              "DESC LIMIT 4\" 2>/dev/null";
  if (FILE* pipe = popen(command.c_str(), "r")) {
    char line[256];
    while (std::fgets(line, sizeof line, pipe) != nullptr) {
      std::string text(line);
      if (!text.empty() && text.back() == '\n') text.pop_back();
      use.tables += (use.tables.empty() ? "" : ", ") + text;
    }
    pclose(pipe);
  }
  return use;
}

DiskUse PostgresDiskUse(const std::string& uri) {
  DiskUse use;
  PGconn* connection = PQconnectdb(uri.c_str());
  PGresult* result = PQexec(connection,
                            "SELECT pg_database_size(current_database()), "
                            "pg_total_relation_size('steps'), "
                            "pg_total_relation_size('step_rollups')");
  if (PQresultStatus(result) == PGRES_TUPLES_OK && PQntuples(result) == 1) {
    use.total = std::strtod(PQgetvalue(result, 0, 0), nullptr);
    use.tables = std::string("steps|") + PQgetvalue(result, 0, 1) + ", step_rollups|" +
                 PQgetvalue(result, 0, 2);
  } else {
    std::fprintf(stderr, "ingest_bench: database size: %s", PQerrorMessage(connection));
  }
  PQclear(result);
  PQfinish(connection);
  return use;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"lossguard ingest/query benchmark (real server, real HTTP on loopback)"};
  std::int64_t records = 1'000'000, batch = 1000, latency_batches = 2000, query_repeats = 50;
  int clients = 2;
  std::string sync = "full";
  app.add_option("--records", records,
                 "records in the throughput phase (= steps of the queried run)");
  app.add_option("--batch", batch, "records per request in the throughput phase");
  app.add_option("--clients", clients, "concurrent client connections in the throughput phase");
  app.add_option("--latency-batches", latency_batches, "100-record requests in the latency phase");
  app.add_option("--query-repeats", query_repeats, "downsampled queries timed");
  app.add_option("--sync", sync, "server --sync mode")->check(CLI::IsMember({"full", "normal"}));
  std::string shape = "small";
  app.add_option("--shape", shape,
                 "records: minimal (7 fields), small (10), micro (13, 8 micro-batches)")
      ->check(CLI::IsMember({"minimal", "small", "micro"}));
  std::string analyzers = "on";
  app.add_option("--analyzers", analyzers, "server --analyzers")
      ->check(CLI::IsMember({"on", "off"}));
  std::string backend = "sqlite";
  app.add_option("--backend", backend, "storage engine")
      ->check(CLI::IsMember({"sqlite", "postgresql"}));
  int run_count = 1;
  app.add_option("--runs", run_count,
                 "runs the throughput batches are spread over (batch b to run b % runs); the query "
                 "reads the first")
      ->check(CLI::Range(1, 1000));
  int server_count = 1;
  app.add_option("--servers", server_count, "lossguard servers on one database (postgresql)")
      ->check(CLI::Range(1, 8));
  CLI11_PARSE(app, argc, argv);
  if (server_count > 1 && backend != "postgresql") {
    std::fprintf(stderr, "ingest_bench: --servers > 1 needs --backend postgresql\n");
    return 2;
  }

  try {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "lossguard-bench-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    std::filesystem::path dir = pattern;
    std::unique_ptr<lossguard::testing::PostgresServer> postgres;
    std::string db = (dir / "bench.db").string();
    if (backend == "postgresql") {
      postgres = std::make_unique<lossguard::testing::PostgresServer>(
          lossguard::testing::PostgresServer::Options{.fsync = true});
      db = postgres->CreateDatabase("bench");
    }
    std::vector<std::unique_ptr<ServerProcess>> servers;
    std::vector<std::string> urls;
    for (int i = 0; i < server_count; ++i) {
      servers.push_back(std::make_unique<ServerProcess>(ServerProcess::Options{
          .db = db,
          .extra_args = {"--sync", sync, "--analyzers", analyzers},
          .stderr_log = dir / ("server-" + std::to_string(i) + ".stderr.log")}));
      urls.push_back(servers.back()->url());
    }
    ServerProcess& server = *servers.front();
    auto cpu = [&] {
      double lossguard_seconds = 0;
      for (const auto& s : servers)
        lossguard_seconds += lossguard::bench::ProcessTreeCpuSeconds(s->pid());
      const double database_seconds =
          postgres ? lossguard::bench::ProcessTreeCpuSeconds(postgres->pid()) : 0.0;
      return std::make_pair(lossguard_seconds, database_seconds);
    };

    // Bodies are built before the clock starts: the benchmark measures the server, not sprintf.
    std::int64_t batches = records / batch;
    std::vector<std::string> bodies;
    const auto run_of = [&](std::int64_t b) {
      return run_count == 1 ? std::string("bench") : "bench-" + std::to_string(b % run_count);
    };
    for (std::int64_t b = 0; b < batches; ++b)
      bodies.push_back(Body(shape, run_of(b), b / run_count * batch, batch));
    const auto cpu_before = cpu();
    double seconds = lossguard::bench::PostConcurrently(urls, bodies, clients);
    const auto cpu_after = cpu();
    bodies.clear();

    lossguard::client::HttpClient client(server.url());
    std::vector<double> ingest_ms;
    for (std::int64_t i = 0; i < latency_batches; ++i) {
      std::string body = Body(shape, "latency", i * 100, 100);
      auto t0 = Clock::now();
      CheckOk(client.Post("/api/v1/steps", body, "application/x-ndjson"));
      ingest_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    }

    std::vector<double> query_ms;
    std::size_t response_bytes = 0;
    for (std::int64_t i = 0; i < query_repeats; ++i) {
      auto t0 = Clock::now();
      auto response = client.Get("/api/v1/runs/" + run_of(0) + "/steps?max_points=2000");
      query_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
      CheckOk(response);
      response_bytes = response.body.size();
    }
    const DiskUse disk = postgres ? PostgresDiskUse(db) : DiskUse{};
    for (auto& s : servers) s->Stop(SIGTERM, std::chrono::seconds(30));
    const DiskUse on_disk = postgres ? disk : SqliteDiskUse(db);
    postgres.reset();
    std::filesystem::remove_all(dir);

    const double stored = static_cast<double>(batches * batch);
    std::printf(
        "ingest throughput: %lld records in %.2f s = %.0f records/s (%s, %d server(s), %d run(s), "
        "batches of %lld, %d clients, --sync %s, --analyzers %s)\n",
        static_cast<long long>(batches * batch), seconds, stored / seconds, backend.c_str(),
        server_count, run_count, static_cast<long long>(batch), clients, sync.c_str(),
        analyzers.c_str());
    const double server_us = 1e6 * (cpu_after.first - cpu_before.first) / stored;
    const double database_us = 1e6 * (cpu_after.second - cpu_before.second) / stored;
    std::printf(
        "CPU per record: lossguard-server %.2f us, database server %.2f us (one core sustains "
        "%.0f records/s of server work, %.0f of database work)\n",
        server_us, database_us, 1e6 / server_us, database_us > 0 ? 1e6 / database_us : 0.0);
    std::printf("ingest latency, 100-record batches: p50 %.2f ms, p99 %.2f ms (%zu requests)\n",
                Percentile(ingest_ms, 0.5), Percentile(ingest_ms, 0.99), ingest_ms.size());
    std::printf(
        "query steps?max_points=2000 over %lld steps: p50 %.2f ms, p99 %.2f ms (%zu requests, %zu "
        "bytes)\n",
        static_cast<long long>(batches / run_count * batch), Percentile(query_ms, 0.5),
        Percentile(query_ms, 0.99), query_ms.size(), response_bytes);
    const double all_records = stored + static_cast<double>(latency_batches * 100);
    std::printf(
        "on disk: %.1f MB for %.0f %s records = %.1f bytes/record = %.1f MB per million (%s)\n",
        on_disk.total / 1e6, all_records, shape.c_str(), on_disk.total / all_records,
        on_disk.total / all_records, on_disk.tables.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ingest_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
