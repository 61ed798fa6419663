// GET /metrics on the real server: content, bounded cardinality, promtool's lint; and a real
// Prometheus server scraping it.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>
#include <fstream>
#include <functional>
#include <regex>
#include <set>
#include <thread>

#include "e2e/e2e_util.h"
#include "lossguard/client/http_client.h"
#include "support/processes.h"
#include "support/records.h"
#include "support/temp_dir.h"

namespace lossguard::testing {
namespace metrics_test {

using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::Not;

std::string Metrics(client::HttpClient& client) {
  auto response = client.Get("/metrics");
  EXPECT_EQ(response.status, 200);
  return response.body;
}

// The value of the sample whose line starts with `series` (name and labels as exposed).
std::optional<std::string> Sample(const std::string& text, const std::string& series) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(series + " ", 0) == 0) return line.substr(series.size() + 1);
  }
  return std::nullopt;
}

void Post(client::HttpClient& client, const std::string& ndjson, int status = 200) {
  auto response = client.Post("/api/v1/steps", ndjson, "application/x-ndjson");
  ASSERT_EQ(response.status, status) << response.body;
}

// Steps of a GA-8 run whose loss is summed over micro-batches (8x ref_loss).
std::string GaBugSteps(const std::string& run, std::int64_t first, std::int64_t count) {
  std::string out;
  for (std::int64_t step = first; step < first + count; ++step) {
    json r = RecordJson(run, step, 8 * 2.5);
    r["ga_steps"] = 8;
    r["ref_loss"] = 2.5;
    r["grad_norm"] = 1.5;
    r["lr"] = 3e-4;
    out += r.dump() + "\n";
  }
  return out;
}

TEST(Metrics, RunsAlertsAndServerCountersAreExported) {
  TempDir dir;
  ServerProcess server({.db = dir.File("db")});
  client::HttpClient client(server.url());
  Post(client, GaBugSteps("m", 0, 10));
  json nan_step = RecordJson("m", 10, 20.0);
  nan_step["ga_steps"] = 8;
  nan_step["ref_loss"] = 2.5;
  nan_step["grad_norm"] = "NaN";
  nan_step["lr"] = "Infinity";
  Post(client, nan_step.dump() + "\n");
  Post(client, GaBugSteps("m", 0, 3));      // duplicates
  Post(client, "{\"run\": \"m\"}\n", 400);  // refused: no step
  Post(client, NdjsonSteps("healthy", 0, 5));

  auto response = client.Get("/metrics");
  ASSERT_EQ(response.status, 200);
  EXPECT_EQ(response.content_type, "text/plain; version=0.0.4; charset=utf-8");
  const std::string text = response.body;
  EXPECT_EQ(Sample(text, "lossguard_run_step{run=\"m\"}"), "10");
  EXPECT_EQ(Sample(text, "lossguard_run_loss{run=\"m\"}"), "20");
  EXPECT_EQ(Sample(text, "lossguard_run_ref_loss{run=\"m\"}"), "2.5");
  EXPECT_EQ(Sample(text, "lossguard_run_loss_scale_ratio{run=\"m\"}"), "8");
  EXPECT_EQ(Sample(text, "lossguard_run_grad_norm{run=\"m\"}"), "Nan") << "NaN is data";
  EXPECT_EQ(Sample(text, "lossguard_run_lr{run=\"m\"}"), "+Inf") << "an lr blow-up is data";
  EXPECT_EQ(Sample(text, "lossguard_run_lr{run=\"healthy\"}"), std::nullopt) << "no lr sent";
  EXPECT_EQ(Sample(text, "lossguard_run_ga_steps{run=\"m\"}"), "8");
  EXPECT_EQ(Sample(text, "lossguard_run_tokens{run=\"healthy\"}"), "1000");
  EXPECT_EQ(Sample(text, "lossguard_run_loss_scale_ratio{run=\"healthy\"}"), std::nullopt)
      << "no ref_loss: no ratio";
  EXPECT_EQ(
      Sample(text,
             "lossguard_alerts_open{kind=\"loss_scale_mismatch\",run=\"m\",severity=\"critical\"}"),
      "1");
  EXPECT_EQ(
      Sample(text, "lossguard_alerts_open{kind=\"nonfinite\",run=\"m\",severity=\"critical\"}"),
      "1");
  EXPECT_EQ(Sample(text, "lossguard_alerts_open_all_runs{severity=\"critical\"}"), "2");
  EXPECT_EQ(Sample(text,
                   "lossguard_alerts_acknowledged{kind=\"nonfinite\",run=\"m\","
                   "severity=\"critical\"}"),
            std::nullopt);

  // An acknowledged episode leaves lossguard_alerts_open (the paging rule stops firing) and is
  // counted apart until it resolves.
  auto alerts = json::parse(client.Get("/api/v1/alerts?run=m&kind=nonfinite").body)["alerts"];
  ASSERT_EQ(alerts.size(), 1u);
  const std::string id = alerts[0]["id"].dump();
  ASSERT_EQ(client.Post("/api/v1/alerts/" + id + "/ack", "", "application/json").status, 200);
  const std::string acked = client.Get("/metrics").body;
  EXPECT_EQ(
      Sample(acked, "lossguard_alerts_open{kind=\"nonfinite\",run=\"m\",severity=\"critical\"}"),
      std::nullopt);
  EXPECT_EQ(Sample(acked,
                   "lossguard_alerts_acknowledged{kind=\"nonfinite\",run=\"m\","
                   "severity=\"critical\"}"),
            "1");
  EXPECT_EQ(
      Sample(acked,
             "lossguard_alerts_open{kind=\"loss_scale_mismatch\",run=\"m\",severity=\"critical\"}"),
      "1");
  EXPECT_EQ(Sample(acked, "lossguard_alerts_open_all_runs{severity=\"critical\"}"), "1");
  EXPECT_EQ(Sample(text, "lossguard_ingest_records_total{outcome=\"new\"}"), "16");
  EXPECT_EQ(Sample(text, "lossguard_ingest_records_total{outcome=\"duplicate\"}"), "3");
  EXPECT_EQ(Sample(text, "lossguard_ingest_rejected_batches_total{reason=\"invalid_batch\"}"), "1");
  EXPECT_EQ(Sample(text,
                   "lossguard_http_request_duration_seconds_count{code=\"200\",method=\"POST\","
                   "route=\"/api/v1/steps\"}"),
            "4");
  EXPECT_EQ(Sample(text, "lossguard_metrics_runs_active"), "2");
  EXPECT_EQ(Sample(text, "lossguard_metrics_runs_omitted"), "0");

  EXPECT_EQ(client.Get("/metrics?x=1").status, 400) << "unknown parameters are refused";

  // promtool's lint of the live exposition.
  std::ofstream(dir.File("metrics.txt")) << Metrics(client);
  CommandResult lint = RunCommand(
      {"/bin/sh", "-c", "promtool check metrics < '" + dir.File("metrics.txt").string() + "'"},
      std::chrono::seconds(30));
  EXPECT_EQ(lint.exit_code, 0) << lint.out << lint.err;
  EXPECT_EQ(lint.out + lint.err, "") << "promtool found problems";
}

TEST(Metrics, ExportedRunsAreBoundedByWindowAndCap) {
  TempDir dir;
  ServerProcess server({.db = dir.File("db"),
                        .extra_args = {"--metrics-max-runs", "2", "--metrics-run-window", "2"}});
  client::HttpClient client(server.url());
  for (const std::string run : {"a", "b", "c"}) {
    Post(client, NdjsonSteps(run, 0, 3));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // distinct last_seen
  }
  std::string text = Metrics(client);
  EXPECT_EQ(Sample(text, "lossguard_metrics_runs_active"), "3");
  EXPECT_EQ(Sample(text, "lossguard_metrics_runs_omitted"), "1");
  EXPECT_TRUE(Sample(text, "lossguard_run_step{run=\"c\"}")) << "the most recent runs are kept";
  EXPECT_TRUE(Sample(text, "lossguard_run_step{run=\"b\"}"));
  EXPECT_FALSE(Sample(text, "lossguard_run_step{run=\"a\"}")) << "the least recent is left out";

  std::this_thread::sleep_for(std::chrono::milliseconds(2500));  // past the 2 s window
  Post(client, NdjsonSteps("a", 3, 1));
  text = Metrics(client);
  EXPECT_EQ(Sample(text, "lossguard_metrics_runs_active"), "1");
  EXPECT_TRUE(Sample(text, "lossguard_run_step{run=\"a\"}"));
  EXPECT_THAT(text, Not(HasSubstr("run=\"b\"")));
}

// Every metric the Grafana dashboard queries is one the live server exports (histogram series by
// their family name).
TEST(Grafana, EveryDashboardQueryNamesAnExportedMetric) {
  TempDir dir;
  ServerProcess server({.db = dir.File("db")});
  client::HttpClient client(server.url());
  Post(client, GaBugSteps("g", 0, 5));
  Post(client, "{}\n", 400);
  const std::string text = Metrics(client);
  std::set<std::string> exported;
  std::regex type_line(R"(# TYPE (\S+) )");
  for (std::sregex_iterator it(text.begin(), text.end(), type_line), end; it != end; ++it) {
    exported.insert((*it)[1]);
  }
  std::ifstream in(std::string(LOSSGUARD_SOURCE_DIR) + "/docker/grafana/dashboards/lossguard.json");
  json dashboard = json::parse(in);
  std::vector<std::string> exprs;
  std::function<void(const json&)> walk = [&](const json& node) {
    if (node.is_object()) {
      if (node.contains("expr")) exprs.push_back(node["expr"]);
      if (node.contains("query") && node["query"].is_object())
        exprs.push_back(node["query"]["query"]);
      for (const auto& [key, value] : node.items()) walk(value);
    } else if (node.is_array()) {
      for (const json& value : node) walk(value);
    }
  };
  walk(dashboard);
  ASSERT_GE(exprs.size(), 8u);
  std::regex metric(R"(lossguard_[a-z_]+)");
  int names = 0;
  for (const std::string& expr : exprs) {
    for (std::sregex_iterator it(expr.begin(), expr.end(), metric), end; it != end; ++it) {
      std::string name = (*it)[0];
      for (const char* suffix : {"_bucket", "_count", "_sum"}) {
        if (!exported.count(name) && name.ends_with(suffix))
          name.resize(name.size() - strlen(suffix));
      }
      EXPECT_TRUE(exported.count(name)) << expr << ": " << name << " is not exported";
      ++names;
    }
  }
  EXPECT_GE(names, 10);
}

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address);
  socklen_t length = sizeof address;
  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  int port = ntohs(address.sin_port);
  close(fd);
  return port;
}

// A real Prometheus (Debian's) scrapes the real server on loopback while a run streams in; its
// HTTP API then holds the values, and its rules file (docker/prometheus) fires on them.
TEST(Prometheus, ScrapesTheServerWhileARunStreams) {
  TempDir dir;
  ServerProcess server({.db = dir.File("db")});
  const std::string target = server.url().substr(std::string("http://").size());
  const int port = FreePort();
  std::ofstream(dir.File("prometheus.yml"))
      << "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
      << "rule_files: ['" << LOSSGUARD_SOURCE_DIR << "/docker/prometheus/lossguard-rules.yml']\n"
      << "scrape_configs:\n  - job_name: lossguard\n    static_configs:\n      - targets: ['"
      << target << "']\n";
  BackgroundProcess prometheus({"/usr/bin/prometheus",
                                "--config.file=" + dir.File("prometheus.yml").string(),
                                "--storage.tsdb.path=" + dir.File("tsdb").string(),
                                "--web.listen-address=127.0.0.1:" + std::to_string(port)});
  client::HttpClient client(server.url());
  client::HttpClient prom("http://127.0.0.1:" + std::to_string(port));
  auto query = [&](const std::string& promql) -> json {
    try {
      std::string encoded;
      for (unsigned char c : promql) {
        char hex[4];
        std::snprintf(hex, sizeof hex, "%%%02X", c);
        encoded += std::isalnum(c) ? std::string(1, static_cast<char>(c)) : std::string(hex);
      }
      auto response = prom.Get("/api/v1/query?query=" + encoded);
      if (response.status != 200) return json::array();
      return json::parse(response.body)["data"]["result"];
    } catch (const std::exception&) {
      return json::array();  // not up yet
    }
  };
  // Stream a run with the GA bug, 5 steps every 200 ms, until Prometheus has its latest step
  // (bounded: 60 s).
  std::int64_t sent = 0;
  json step, ratio;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    ASSERT_TRUE(prometheus.Running()) << prometheus.LogText();
    Post(client, GaBugSteps("streamed", sent, 5));
    sent += 5;
    step = query("lossguard_run_step{run=\"streamed\"}");
    ratio = query("lossguard_run_loss_scale_ratio{run=\"streamed\"}");
    if (!step.empty() && std::stod(step[0]["value"][1].get<std::string>()) >= 20 &&
        !ratio.empty()) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  ASSERT_FALSE(step.empty()) << "Prometheus never saw the run; its log:\n" << prometheus.LogText();
  EXPECT_GE(std::stod(step[0]["value"][1].get<std::string>()), 20);
  EXPECT_EQ(ratio[0]["value"][1], "8");
  EXPECT_EQ(query("up{job=\"lossguard\"}")[0]["value"][1], "1");
  json open = query("lossguard_alerts_open{run=\"streamed\",kind=\"loss_scale_mismatch\"}");
  ASSERT_EQ(open.size(), 1u);
  EXPECT_EQ(open[0]["value"][1], "1");
  // The rules file is loaded and its alert is at least pending (its `for` is minutes).
  json alerts = query("ALERTS{alertname=\"LossguardCriticalAlertOpen\",run=\"streamed\"}");
  for (int i = 0; i < 50 && alerts.empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    alerts = query("ALERTS{alertname=\"LossguardCriticalAlertOpen\",run=\"streamed\"}");
  }
  ASSERT_FALSE(alerts.empty()) << prometheus.LogText();
  EXPECT_EQ(alerts[0]["metric"]["alertstate"], "pending");
}

}  // namespace metrics_test
}  // namespace lossguard::testing
