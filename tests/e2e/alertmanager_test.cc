// Alerts reach people through the Prometheus stack: the real Prometheus scrapes the real server
// with the shipped rules (docker/prometheus/lossguard-rules.yml) and sends what fires to the real
// Alertmanager with the shipped configuration (docker/alertmanager/alertmanager.yml), whose webhook
// receiver is a loopback sink run by the test. The server requires a read token, which Prometheus
// sends as a bearer token (the scrape configuration the README shows). Only waiting times are
// shortened (the rules' `for`, Alertmanager's group_wait and group_interval), so that a page
// arrives in seconds, not minutes.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include "e2e/corpus.h"
#include "e2e/e2e_util.h"
#include "lossguard/client/http_client.h"
#include "support/processes.h"
#include "support/temp_dir.h"
#include "support/webhook_sink.h"

namespace lossguard::testing {
namespace alertmanager_test {

using nlohmann::json;
using Requests = std::vector<WebhookSink::Request>;

// `text` with every match of `pattern` replaced; fails the test if there is none (the shipped file
// changed and the test would silently test something else).
std::string Replaced(const std::string& text, const std::string& pattern,
                     const std::string& replacement) {
  const std::regex re(pattern);
  EXPECT_TRUE(std::regex_search(text, re)) << "no " << pattern << " in the shipped file";
  return std::regex_replace(text, re, replacement);
}

// The alerts of Alertmanager's webhook posts (payload version 4) named `alertname` for `run`
// with `status` (firing or resolved).
bool Posted(const Requests& requests, const std::string& alertname, const std::string& run,
            const std::string& status) {
  for (const WebhookSink::Request& r : requests) {
    json body = json::parse(r.body, nullptr, /*allow_exceptions=*/false);
    if (!body.is_object() || body.value("version", "") != "4") continue;
    for (const json& alert : body["alerts"]) {
      if (alert["labels"].value("alertname", "") == alertname &&
          alert["labels"].value("run", "") == run && alert.value("status", "") == status) {
        return true;
      }
    }
  }
  return false;
}

TEST(Alertmanager, AGaBugRunPagesThroughPrometheusAndAlertmanagerAndTheAckResolvesIt) {
  TempDir dir;
  WebhookSink receiver;
  // With a read token, as a shared server runs: Prometheus scrapes with it as a bearer token.
  const auto read_token = dir.File("read-token");
  std::ofstream(read_token) << "prometheus-read-token-0123456789\n";
  ServerProcess server(
      {.db = dir.File("db"), .extra_args = {"--read-token-file", read_token.string()}});
  const std::string target = server.url().substr(std::string("http://").size());
  const int prometheus_port = FreeLoopbackPort();
  const int alertmanager_port = FreeLoopbackPort();
  const std::filesystem::path docker = std::filesystem::path(LOSSGUARD_SOURCE_DIR) / "docker";

  std::string rules = ReadFile(docker / "prometheus/lossguard-rules.yml");
  rules = Replaced(rules, R"(for: \d+m)", "for: 2s");
  std::ofstream(dir.File("rules.yml")) << rules;
  std::ofstream(dir.File("prometheus.yml"))
      << "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
      << "alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['127.0.0.1:"
      << alertmanager_port << "']\n"
      << "rule_files: ['" << dir.File("rules.yml").string() << "']\n"
      << "scrape_configs:\n  - job_name: lossguard\n"
      << "    authorization:\n      credentials_file: " << read_token.string() << "\n"
      << "    static_configs:\n      - targets: ['" << target << "']\n";
  std::string manager = ReadFile(docker / "alertmanager/alertmanager.yml");
  manager =
      Replaced(manager, R"(http://alert-receiver:9000/lossguard)", receiver.Url("/lossguard"));
  manager = Replaced(manager, R"(group_wait: \d+[sm])", "group_wait: 1s");
  manager = Replaced(manager, R"(group_interval: \d+[sm])", "group_interval: 1s");
  std::ofstream(dir.File("alertmanager.yml")) << manager;

  BackgroundProcess alertmanager(
      {"/usr/bin/prometheus-alertmanager", "--config.file=" + dir.File("alertmanager.yml").string(),
       "--storage.path=" + dir.File("am").string(),
       "--web.listen-address=127.0.0.1:" + std::to_string(alertmanager_port),
       "--cluster.listen-address="});  // no gossip port: one Alertmanager, loopback only
  BackgroundProcess prometheus(
      {"/usr/bin/prometheus", "--config.file=" + dir.File("prometheus.yml").string(),
       "--storage.tsdb.path=" + dir.File("tsdb").string(),
       "--web.listen-address=127.0.0.1:" + std::to_string(prometheus_port)});

  client::HttpClientOptions reader;
  reader.token = "prometheus-read-token-0123456789";
  client::HttpClient api(server.url(), reader);
  auto lines = Lines("bug-sum-no-ga-div");
  Send(api, lines, 0, lines.size());
  const std::string run = "bug-sum-no-ga-div";

  auto fired = [&](const Requests& r) {
    return Posted(r, "LossguardCriticalAlertOpen", run, "firing") &&
           Posted(r, "LossguardLossScaleMismatch", run, "firing");
  };
  ASSERT_TRUE(receiver.WaitFor(fired, std::chrono::seconds(120)))
      << "no page arrived; Prometheus:\n"
      << prometheus.LogText() << "\nAlertmanager:\n"
      << alertmanager.LogText();
  for (const WebhookSink::Request& r : receiver.Requests()) {
    EXPECT_EQ(r.method, "POST");
    EXPECT_EQ(r.target, "/lossguard");
  }

  // A person acknowledges lossguard's episode: its rule stops firing and Alertmanager says so
  // (send_resolved). The loss-scale rule keeps firing: the loss is still wrong.
  const json alerts = Alerts(api, run);
  ASSERT_FALSE(alerts.empty());
  for (const json& alert : alerts) {
    if (alert["state"] != "open" || alert["severity"] != "critical") continue;
    auto ack = api.Post("/api/v1/alerts/" + alert["id"].dump() + "/ack", "", "");
    ASSERT_EQ(ack.status, 200u) << ack.body;
  }
  ASSERT_TRUE(receiver.WaitFor(
      [&](const Requests& r) { return Posted(r, "LossguardCriticalAlertOpen", run, "resolved"); },
      std::chrono::seconds(120)))
      << alertmanager.LogText();
  EXPECT_FALSE(Posted(receiver.Requests(), "LossguardLossScaleMismatch", run, "resolved"));
  EXPECT_TRUE(prometheus.Running());
  EXPECT_TRUE(alertmanager.Running());
}

}  // namespace alertmanager_test
}  // namespace lossguard::testing
