// Built-in alert notifications end to end: the real server streams GA-bug and spike runs and posts
// their episodes to real webhook receivers on loopback (HTTP and HTTPS), through the durable
// outbox: a receiver that is down, refuses, or outlives a server kill -9 gets every notification,
// each with its idempotency key; a full outbox drops the oldest and says so; a receiver's 4xx
// drops one notification instead of blocking the rest.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <thread>

#include "e2e/corpus.h"
#include "lossguard/client/http_client.h"
#include "support/postgres_server.h"
#include "support/processes.h"
#include "support/temp_dir.h"
#include "support/test_ca.h"
#include "support/webhook_sink.h"

namespace lossguard::testing {
namespace notify_test {

using ::testing::HasSubstr;
using Requests = std::vector<WebhookSink::Request>;
constexpr auto kDeliveryTimeout = std::chrono::seconds(60);

// "ALERT_ID EVENT" of every notification the server's alerts call for (escalations aside: whether
// an episode escalates depends on its data), from GET /api/v1/alerts.
std::set<std::string> ExpectedEvents(client::HttpClient& server) {
  auto response = server.Get("/api/v1/alerts?limit=10000");
  EXPECT_EQ(response.status, 200u);
  const nlohmann::json alerts = nlohmann::json::parse(response.body).at("alerts");
  std::set<std::string> out;
  for (const nlohmann::json& a : alerts) {
    if (a["severity"] == "info") continue;
    const std::string id = a["id"].dump();
    out.insert(id + " opened");
    if (a["state"] == "resolved") out.insert(id + " resolved");
  }
  return out;
}

// The notifications a JSON receiver took (answered 2xx), once each by idempotency key, in the
// order they first arrived.
std::vector<nlohmann::json> Delivered(const Requests& requests) {
  std::vector<nlohmann::json> out;
  std::set<std::string> keys;
  for (const WebhookSink::Request& r : requests) {
    if (r.answered < 200 || r.answered >= 300) continue;
    nlohmann::json body = nlohmann::json::parse(r.body);
    if (keys.insert(body["idempotency_key"].get<std::string>()).second) out.push_back(body);
  }
  return out;
}

std::set<std::string> EventsOf(const std::vector<nlohmann::json>& delivered) {
  std::set<std::string> out;
  for (const nlohmann::json& n : delivered) {
    if (n["event"] != "escalated")
      out.insert(n["alert"]["id"].dump() + " " + n["event"].get<std::string>());
  }
  return out;
}

// Waits until the receiver took every expected event.
bool TookAll(const WebhookSink& sink, const std::set<std::string>& expected) {
  return sink.WaitFor(
      [&](const Requests& requests) {
        std::set<std::string> got = EventsOf(Delivered(requests));
        return std::includes(got.begin(), got.end(), expected.begin(), expected.end());
      },
      kDeliveryTimeout);
}

// The value of the first sample of `metric` whose labels contain `label_part`.
std::optional<double> Sample(client::HttpClient& server, const std::string& metric,
                             const std::string& label_part) {
  const std::string text = server.Get("/metrics").body;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind(metric + "{", 0) != 0 || line.find(label_part) == std::string::npos) continue;
    return std::stod(line.substr(line.rfind(' ') + 1));
  }
  return std::nullopt;
}

// Waits (bounded) until the sample of `metric` with `label_part` is `value`.
bool EventuallySample(client::HttpClient& server, const std::string& metric,
                      const std::string& label_part, double value) {
  const auto deadline = std::chrono::steady_clock::now() + kDeliveryTimeout;
  while (Sample(server, metric, label_part) != value) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return true;
}

// Waits (bounded) until the server's log holds `text`.
bool EventuallyLogs(const ServerProcess& server, const std::string& text) {
  const auto deadline = std::chrono::steady_clock::now() + kDeliveryTimeout;
  while (server.StderrText().find(text) == std::string::npos) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return true;
}

void SendRuns(client::HttpClient& server, const std::vector<std::string>& runs) {
  for (const std::string& run : runs) {
    auto lines = Lines(run);
    Send(server, lines, 0, lines.size());
  }
}

TEST(Notifications, EveryEpisodeChangeReachesEachWebhookThroughAnOutage) {
  TempDir dir;
  WebhookSink json_sink, slack_sink;
  json_sink.GoDown();  // down before the first alert, back after a few retries
  ServerProcess server(
      {.db = dir.File("db"),
       .extra_args = {"--notify-webhook", json_sink.Url(), "--notify-webhook",
                      "slack:" + slack_sink.Url("/slack"), "--notify-retry-max-seconds", "2"}});
  client::HttpClient api(server.url());
  SendRuns(api, {"bug-sum-no-ga-div", "bug-lr-spike", "healthy-mb1-ga8"});
  const std::set<std::string> expected = ExpectedEvents(api);
  ASSERT_GE(expected.size(), 3u) << "the GA bug opens an episode, the spike opens and resolves one";

  // The Slack-format receiver is up: it gets one text per notification meanwhile.
  ASSERT_TRUE(slack_sink.WaitFor([&](const Requests& r) { return r.size() >= expected.size(); },
                                 kDeliveryTimeout));
  for (const WebhookSink::Request& r : slack_sink.Requests()) {
    EXPECT_EQ(r.target, "/slack");
    EXPECT_EQ(r.content_type, "application/json");
    const std::string text = nlohmann::json::parse(r.body).at("text");
    EXPECT_THAT(text, HasSubstr("lossguard: "));
  }
  std::this_thread::sleep_for(std::chrono::seconds(3));  // a few retries against the closed port
  EXPECT_GE(Sample(api, "lossguard_notifications_pending", "json:http://127.0.0.1").value_or(0),
            static_cast<double>(expected.size()))
      << "the down receiver's notifications wait in the outbox";
  EXPECT_GE(Sample(api, "lossguard_notification_target_failures", "json:").value_or(0), 1);
  EXPECT_TRUE(EventuallyLogs(server, "failed (attempt 1)"));

  json_sink.ComeBack();
  ASSERT_TRUE(TookAll(json_sink, expected)) << server.StderrText();
  const std::vector<nlohmann::json> delivered = Delivered(json_sink.Requests());
  EXPECT_EQ(EventsOf(delivered), expected) << "nothing the alerts do not call for";
  std::map<std::string, std::vector<std::string>> by_alert;
  for (const nlohmann::json& n : delivered) {
    by_alert[n["alert"]["id"].dump()].push_back(n["event"]);
    EXPECT_EQ(n["source"], "lossguard");
    EXPECT_EQ(n["dropped_before"], 0);
    EXPECT_NE(n["alert"]["severity"], "info");
  }
  for (const auto& [id, events] : by_alert) {
    EXPECT_EQ(events.front(), "opened") << "alert " << id;
    if (events.back() == "resolved") {
      EXPECT_EQ(std::count(events.begin(), events.end(), "resolved"), 1) << "alert " << id;
    }
  }
  for (const WebhookSink::Request& r : json_sink.Requests()) {
    if (r.answered == 200) {
      EXPECT_EQ(r.idempotency_key, nlohmann::json::parse(r.body)["idempotency_key"])
          << "the header and the body carry the same key";
    }
  }
  // The receiver has answered; the server deletes each delivery just after.
  EXPECT_TRUE(EventuallySample(api, "lossguard_notifications_pending", "json:", 0));
  EXPECT_EQ(Sample(api, "lossguard_notification_target_failures", "json:").value_or(-1), 0);
  EXPECT_GE(Sample(api, "lossguard_notifications_total", "outcome=\"delivered\"").value_or(0), 1);
  EXPECT_TRUE(EventuallyLogs(server, "delivered again after"));
}

TEST(Notifications, NotificationsCommittedBeforeAKill9AreDeliveredAfterTheRestart) {
  TempDir dir;
  WebhookSink sink;
  sink.Answer(503);
  const std::string listen = "127.0.0.1:" + std::to_string(FreeLoopbackPort());
  const std::vector<std::string> args = {"--notify-webhook", sink.Url(),
                                         "--notify-retry-max-seconds", "1"};
  std::set<std::string> expected;
  {
    ServerProcess server({.db = dir.File("db"), .listen = listen, .extra_args = args});
    client::HttpClient api(server.url());
    SendRuns(api, {"bug-sum-no-ga-div", "bug-lr-spike"});
    expected = ExpectedEvents(api);
    ASSERT_GE(expected.size(), 3u);
    ASSERT_TRUE(sink.WaitFor([](const Requests& r) { return r.size() >= 2; }, kDeliveryTimeout))
        << "the receiver refuses, and is retried";
    EXPECT_EQ(server.Stop(SIGKILL, std::chrono::seconds(10)), -SIGKILL);
  }
  ASSERT_TRUE(Delivered(sink.Requests()).empty());
  sink.Answer(200);
  // The same address: the restarted server is the lease's holder and takes its targets at once.
  ServerProcess restarted({.db = dir.File("db"), .listen = listen, .extra_args = args});
  ASSERT_TRUE(TookAll(sink, expected)) << restarted.StderrText();
  EXPECT_EQ(EventsOf(Delivered(sink.Requests())), expected);
}

TEST(Notifications, AServerKilledMidPostIsSucceededAtOnceNotAfterItsLease) {
  TempDir dir;
  WebhookSink sink;
  sink.Delay(
      std::chrono::seconds(10));  // the first post is still waiting for its answer at the kill
  const std::vector<std::string> args = {"--notify-webhook", sink.Url()};
  std::set<std::string> expected;
  std::string in_flight_key;
  {
    ServerProcess server({.db = dir.File("db"), .extra_args = args});
    client::HttpClient api(server.url());
    SendRuns(api, {"bug-sum-no-ga-div", "bug-lr-spike"});
    expected = ExpectedEvents(api);
    ASSERT_TRUE(sink.WaitFor([](const Requests& r) { return !r.empty(); }, kDeliveryTimeout));
    EXPECT_EQ(server.Stop(SIGKILL, std::chrono::seconds(10)), -SIGKILL);
    const Requests before = sink.Requests();
    ASSERT_EQ(before.size(), 1u) << "one post in flight, unanswered";
    in_flight_key = before[0].idempotency_key;
  }
  sink.Delay(std::chrono::milliseconds(0));
  // Another port (both ephemeral): the lease's holder is known gone by its process, not its name.
  const auto restarted_at = std::chrono::steady_clock::now();
  ServerProcess restarted({.db = dir.File("db"), .extra_args = args});
  auto after_restart = [](const Requests& requests) {
    return Requests(requests.begin() + 1, requests.end());
  };
  ASSERT_TRUE(sink.WaitFor(
      [&](const Requests& requests) {
        std::set<std::string> got = EventsOf(Delivered(after_restart(requests)));
        return std::includes(got.begin(), got.end(), expected.begin(), expected.end());
      },
      kDeliveryTimeout))
      << restarted.StderrText();
  EXPECT_LT(std::chrono::steady_clock::now() - restarted_at, std::chrono::seconds(15))
      << "delivered after the 30 s lease ran out, not at once";
  EXPECT_EQ(after_restart(sink.Requests()).front().idempotency_key, in_flight_key)
      << "the unanswered post comes first again, with its key";
  EXPECT_THAT(restarted.StderrText(), HasSubstr("took back the lease"));
}

TEST(Notifications, AFullOutboxDropsTheOldestAndTheNextDeliverySaysHowMany) {
  TempDir dir;
  WebhookSink sink;
  sink.GoDown();
  ServerProcess server({.db = dir.File("db"),
                        .extra_args = {"--notify-webhook", sink.Url(), "--notify-outbox-max", "1",
                                       "--notify-retry-max-seconds", "1"}});
  client::HttpClient api(server.url());
  SendRuns(api, {"bug-sum-no-ga-div", "bug-lr-spike"});
  const std::size_t made = ExpectedEvents(api).size();
  ASSERT_GE(made, 3u);
  EXPECT_THAT(server.StderrText(), HasSubstr("over the outbox limit of 1"));
  sink.ComeBack();
  ASSERT_TRUE(
      sink.WaitFor([](const Requests& r) { return !Delivered(r).empty(); }, kDeliveryTimeout));
  std::this_thread::sleep_for(std::chrono::seconds(2));
  const std::vector<nlohmann::json> delivered = Delivered(sink.Requests());
  ASSERT_EQ(delivered.size(), 1u) << "only the newest was kept";
  EXPECT_GE(delivered[0]["dropped_before"].get<std::int64_t>(),
            static_cast<std::int64_t>(made) - 1);
  EXPECT_GE(Sample(api, "lossguard_notifications_dropped_total", "json:").value_or(0),
            static_cast<double>(made) - 1);
}

TEST(Notifications, AReceiversRefusalDropsThatNotificationInsteadOfRetryingForever) {
  TempDir dir;
  WebhookSink sink;
  sink.Answer(400);
  ServerProcess server(
      {.db = dir.File("db"),
       .extra_args = {"--notify-webhook", sink.Url(), "--notify-retry-max-seconds", "1"}});
  client::HttpClient api(server.url());
  SendRuns(api, {"bug-sum-no-ga-div"});
  const std::size_t made = ExpectedEvents(api).size();
  ASSERT_GE(made, 1u);
  ASSERT_TRUE(sink.WaitFor([&](const Requests& r) { return r.size() >= made; }, kDeliveryTimeout));
  // Retries would come within a second or two (--notify-retry-max-seconds 1): none come.
  std::this_thread::sleep_for(std::chrono::seconds(3));
  EXPECT_EQ(sink.Requests().size(), made);
  EXPECT_TRUE(EventuallyLogs(server, "for good, dropped: HTTP 400"));
  EXPECT_TRUE(EventuallySample(api, "lossguard_notifications_pending", "json:", 0));
  EXPECT_GE(Sample(api, "lossguard_notifications_total", "outcome=\"rejected\"").value_or(0),
            static_cast<double>(made));
}

TEST(Notifications, TwoServersOnOneDatabasePostEachNotificationOnce) {
  TempDir dir;
  PostgresServer postgres;
  const std::string database = postgres.CreateDatabase("notify");
  WebhookSink sink;
  // A slow receiver: each post takes long enough that both servers' dispatchers (polling every
  // second) find the same notifications due while one of them is posting.
  sink.Delay(std::chrono::milliseconds(400));
  std::vector<std::unique_ptr<ServerProcess>> servers;
  for (int i = 0; i < 2; ++i) {
    servers.push_back(std::make_unique<ServerProcess>(ServerProcess::Options{
        .db = database,
        .extra_args = {"--notify-webhook", sink.Url(), "--notify-retry-max-seconds", "1"},
        .stderr_log = dir.File("server-" + std::to_string(i) + ".log")}));
  }
  std::vector<std::unique_ptr<client::HttpClient>> apis;
  for (const auto& server : servers)
    apis.push_back(std::make_unique<client::HttpClient>(server->url()));
  // Each run's batches alternate between the servers, as behind a load balancer.
  for (const std::string run : {"bug-sum-no-ga-div", "bug-lr-spike", "bug-nan"}) {
    const auto lines = Lines(run);
    for (std::size_t b = 0; b * 25 < lines.size(); ++b) {
      Send(*apis[b % 2], lines, b * 25, std::min(lines.size(), (b + 1) * 25));
    }
  }
  const std::set<std::string> expected = ExpectedEvents(*apis[0]);
  ASSERT_GE(expected.size(), 4u);
  ASSERT_TRUE(TookAll(sink, expected)) << servers[0]->StderrText() << servers[1]->StderrText();
  std::this_thread::sleep_for(std::chrono::seconds(3));  // time for a second post, were there one
  const Requests requests = sink.Requests();
  std::multiset<std::string> keys;
  for (const WebhookSink::Request& r : requests) keys.insert(r.idempotency_key);
  for (const std::string& key : keys) EXPECT_EQ(keys.count(key), 1u) << key << " posted twice";
  EXPECT_EQ(EventsOf(Delivered(requests)), expected);
}

TEST(Notifications, HttpsWebhooksAreVerifiedAgainstTheGivenCa) {
  TempDir dir;
  TestCa ca(dir.path() / "pki");
  TestCa stranger(dir.path() / "stranger", "stranger-ca");
  TestCa::Issued trusted = ca.Issue("trusted", {"IP:127.0.0.1"});
  TestCa::Issued untrusted = stranger.Issue("untrusted", {"IP:127.0.0.1"});
  WebhookSink good(WebhookSink::Tls{trusted.certificate, trusted.key});
  WebhookSink impostor(WebhookSink::Tls{untrusted.certificate, untrusted.key});
  ServerProcess server(
      {.db = dir.File("db"),
       .extra_args = {"--notify-webhook", good.Url(), "--notify-webhook", impostor.Url(),
                      "--notify-ca-file", ca.certificate().string(), "--notify-retry-max-seconds",
                      "1"}});
  client::HttpClient api(server.url());
  SendRuns(api, {"bug-sum-no-ga-div"});
  const std::set<std::string> expected = ExpectedEvents(api);
  ASSERT_FALSE(expected.empty());
  ASSERT_TRUE(TookAll(good, expected)) << server.StderrText();
  EXPECT_TRUE(EventuallyLogs(server, "certificate verify failed")) << server.StderrText();
  EXPECT_TRUE(impostor.Requests().empty()) << "nothing is sent to a server that fails verification";
}

TEST(Notifications, BadWebhookFlagsAreRefusedAtStart) {
  TempDir dir;
  auto bad_url = RunCommand({LOSSGUARD_SERVER_BINARY, "--db", dir.File("db").string(),
                             "--notify-webhook", "hooks.example.test/x"},
                            std::chrono::seconds(30));
  EXPECT_EQ(bad_url.exit_code, 2);
  EXPECT_THAT(bad_url.err, HasSubstr("--notify-webhook \"hooks.example.test/x\""));
  auto no_file = RunCommand({LOSSGUARD_SERVER_BINARY, "--db", dir.File("db").string(),
                             "--notify-webhooks-file", dir.File("missing").string()},
                            std::chrono::seconds(30));
  EXPECT_NE(no_file.exit_code, 0);
  EXPECT_THAT(no_file.err, HasSubstr("missing"));
  auto bad_ca =
      RunCommand({LOSSGUARD_SERVER_BINARY, "--db", dir.File("db").string(), "--notify-webhook",
                  "https://127.0.0.1:1/x", "--notify-ca-file", LOSSGUARD_SOURCE_DIR "/README.md"},
                 std::chrono::seconds(30));
  EXPECT_NE(bad_ca.exit_code, 0);
  EXPECT_THAT(bad_ca.err, HasSubstr("cannot load certificate authorities"));
}

}  // namespace notify_test
}  // namespace lossguard::testing
