// What the analyzers' episode changes notify, how a webhook is configured and written, and how a
// failing one is retried: the pure parts of notifications (the outbox is in outbox_test.cc, the
// delivery to a real receiver in e2e/notify_test.cc).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <random>

#include "notify/dispatcher.h"
#include "notify/lease_owner.h"
#include "notify/webhook.h"
#include "store/notification_writer.h"

namespace lossguard {
namespace notifications_test {

using analyzers::AlertEvent;
using analyzers::Severity;
using store::NotificationEvents;
using store::StoredEpisode;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

AlertEvent Change(AlertEvent::Action action, Severity severity) {
  AlertEvent e;
  e.action = action;
  e.severity = severity;
  return e;
}

constexpr auto kOpen = AlertEvent::Action::kOpen;
constexpr auto kExtend = AlertEvent::Action::kExtend;
constexpr auto kResolve = AlertEvent::Action::kResolve;
constexpr auto kOpened = analyzers::NotificationEvent::kOpened;
constexpr auto kEscalated = analyzers::NotificationEvent::kEscalated;
constexpr auto kResolved = analyzers::NotificationEvent::kResolved;

TEST(NotificationEvents, OpensOnceFromTheMinimumSeverity) {
  EXPECT_THAT(
      NotificationEvents(std::nullopt, Change(kOpen, Severity::kWarning), Severity::kWarning),
      ElementsAre(kOpened));
  EXPECT_THAT(NotificationEvents(std::nullopt, Change(kOpen, Severity::kInfo), Severity::kWarning),
              IsEmpty());
  // An info episode that grows to warning is news: "opened", not "escalated".
  EXPECT_THAT(NotificationEvents(StoredEpisode{1, Severity::kInfo, true},
                                 Change(kExtend, Severity::kWarning), Severity::kWarning),
              ElementsAre(kOpened));
  // The same state stored again (a restart replays the upsert): nothing new.
  EXPECT_THAT(NotificationEvents(StoredEpisode{1, Severity::kWarning, true},
                                 Change(kExtend, Severity::kWarning), Severity::kWarning),
              IsEmpty());
}

TEST(NotificationEvents, EscalatesAndResolvesOnlyWhatWasNotified) {
  EXPECT_THAT(NotificationEvents(StoredEpisode{1, Severity::kWarning, true},
                                 Change(kExtend, Severity::kCritical), Severity::kWarning),
              ElementsAre(kEscalated));
  EXPECT_THAT(NotificationEvents(StoredEpisode{1, Severity::kCritical, true},
                                 Change(kResolve, Severity::kCritical), Severity::kWarning),
              ElementsAre(kResolved));
  EXPECT_THAT(NotificationEvents(StoredEpisode{1, Severity::kInfo, true},
                                 Change(kResolve, Severity::kInfo), Severity::kWarning),
              IsEmpty())
      << "an episode never notified ends silently";
  EXPECT_THAT(NotificationEvents(StoredEpisode{1, Severity::kCritical, false},
                                 Change(kResolve, Severity::kCritical), Severity::kWarning),
              IsEmpty())
      << "its end was told already";
  // Opened and resolved within one batch: both, in order.
  EXPECT_THAT(
      NotificationEvents(std::nullopt, Change(kResolve, Severity::kCritical), Severity::kWarning),
      ElementsAre(kOpened, kResolved));
  EXPECT_THAT(NotificationEvents(StoredEpisode{1, Severity::kWarning, true},
                                 Change(kResolve, Severity::kCritical), Severity::kWarning),
              ElementsAre(kEscalated, kResolved));
  EXPECT_THAT(
      NotificationEvents(std::nullopt, Change(kOpen, Severity::kWarning), Severity::kCritical),
      IsEmpty());
}

TEST(ParseWebhook, FormatUrlAndALabelWithoutThePath) {
  auto slack = notify::ParseWebhook("slack:https://hooks.example.test/services/T0/B0/secret");
  ASSERT_TRUE(slack.ok()) << slack.error();
  EXPECT_EQ(slack.value().format, notify::WebhookFormat::kSlack);
  EXPECT_EQ(slack.value().url, "https://hooks.example.test/services/T0/B0/secret");
  EXPECT_THAT(slack.value().target.label, HasSubstr("slack:https://hooks.example.test:443#"));
  EXPECT_THAT(slack.value().target.label, Not(HasSubstr("secret")));
  EXPECT_EQ(slack.value().target.id.size(), 64u) << "SHA-256, hex";
  EXPECT_THAT(slack.value().target.id, Not(HasSubstr("secret")));

  auto json = notify::ParseWebhook("http://[::1]:9000/hook");
  ASSERT_TRUE(json.ok()) << json.error();
  EXPECT_EQ(json.value().format, notify::WebhookFormat::kJson);
  EXPECT_THAT(json.value().target.label, HasSubstr("json:http://[::1]:9000#"));
  EXPECT_NE(json.value().target.id,
            notify::ParseWebhook("json:http://[::1]:9000/other").value().target.id);
  EXPECT_EQ(json.value().target.id,
            notify::ParseWebhook("json:http://[::1]:9000/hook").value().target.id)
      << "json: is the default";

  EXPECT_THAT(notify::ParseWebhook("hooks.example.test/x").error(),
              HasSubstr("must start with http:// or https://"));
  EXPECT_THAT(notify::ParseWebhook("teams:https://x/y").error(),
              HasSubstr("[json:|slack:]http[s]://"));
}

store::OutboxNotification SomeNotification() {
  store::OutboxNotification n;
  n.id = 17;
  n.event = analyzers::NotificationEvent::kOpened;
  n.idempotency_key = "lossguard-abc-17";
  n.attempt = 1;
  n.alert.id = 5;
  n.alert.run = "llama-7b";
  n.alert.kind = analyzers::Kind::kLossScaleMismatch;
  n.alert.severity = Severity::kCritical;
  n.alert.state = analyzers::AlertState::kOpen;
  n.alert.first_step = 2;
  n.alert.last_step = 40;
  n.alert.message = "loss is 7.81x the token-normalised loss";
  n.alert.evidence = {{"factor", 7.81}};
  return n;
}

TEST(WebhookBody, JsonCarriesTheAlertTheEventAndTheKey) {
  nlohmann::json body = nlohmann::json::parse(
      notify::WebhookBody(notify::WebhookFormat::kJson, SomeNotification(), 3));
  EXPECT_EQ(body["event"], "opened");
  EXPECT_EQ(body["idempotency_key"], "lossguard-abc-17");
  EXPECT_EQ(body["dropped_before"], 3);
  EXPECT_EQ(body["alert"]["id"], 5);
  EXPECT_EQ(body["alert"]["run"], "llama-7b");
  EXPECT_EQ(body["alert"]["kind"], "loss_scale_mismatch");
  EXPECT_EQ(body["alert"]["severity"], "critical");
  EXPECT_EQ(body["alert"]["first_step"], 2);
  EXPECT_EQ(body["alert"]["last_step"], 40);
  EXPECT_EQ(body["alert"]["attempt"], 1);
  EXPECT_EQ(body["alert"]["evidence"]["factor"], 7.81);
}

TEST(WebhookBody, SlackIsOneTextNamingRunKindAndDrops) {
  nlohmann::json body = nlohmann::json::parse(
      notify::WebhookBody(notify::WebhookFormat::kSlack, SomeNotification(), 0));
  ASSERT_TRUE(body["text"].is_string());
  const std::string text = body["text"];
  EXPECT_THAT(text, HasSubstr("critical loss_scale_mismatch alert opened on run *llama-7b*"));
  EXPECT_THAT(text, HasSubstr("steps 2-40"));
  EXPECT_THAT(text, HasSubstr("loss is 7.81x"));
  EXPECT_THAT(text, Not(HasSubstr("dropped")));
  const std::string dropped = nlohmann::json::parse(
      notify::WebhookBody(notify::WebhookFormat::kSlack, SomeNotification(), 4))["text"];
  EXPECT_THAT(dropped, HasSubstr("4 earlier notifications were dropped"));
}

TEST(RetryDelay, DoublesWithJitterUpToTheCapAndHonoursRetryAfter) {
  notify::DispatcherOptions options;
  options.retry_initial_seconds = 1;
  options.retry_max_seconds = 60;
  std::mt19937_64 random(7);
  for (int trial = 0; trial < 200; ++trial) {
    for (std::int64_t failures = 1; failures <= 12; ++failures) {
      const double full = std::min(60.0, std::exp2(static_cast<double>(failures - 1)));
      const double delay = notify::Dispatcher::RetryDelay(options, failures, std::nullopt, random);
      ASSERT_GE(delay, full / 2) << failures;
      ASSERT_LE(delay, full) << failures;
    }
  }
  // Jitter: two draws of the same retry differ (200 identical draws would mean none).
  std::set<double> draws;
  for (int i = 0; i < 200; ++i)
    draws.insert(notify::Dispatcher::RetryDelay(options, 5, {}, random));
  EXPECT_GT(draws.size(), 100u);
  EXPECT_GE(notify::Dispatcher::RetryDelay(options, 1, 30.0, random), 30.0);
  EXPECT_LE(notify::Dispatcher::RetryDelay(options, 1, 1e9, random), 60.0)
      << "Retry-After is honoured up to the cap";
}

TEST(LeaseOwner, ReadsBackWhatItWrites) {
  const notify::LeaseOwner self = notify::ThisProcess("box", "127.0.0.1:8080");
  EXPECT_EQ(self.pid, getpid());
  EXPECT_GT(self.pid_namespace, 0u);
  EXPECT_GT(self.start_ticks, 0u);
  const std::string text = notify::FormatLeaseOwner(self);
  auto parsed = notify::ParseLeaseOwner(text);
  ASSERT_TRUE(parsed.has_value()) << text;
  EXPECT_EQ(parsed->host, "box");
  EXPECT_EQ(parsed->address, "127.0.0.1:8080");
  EXPECT_EQ(parsed->pid, self.pid);
  EXPECT_EQ(parsed->pid_namespace, self.pid_namespace);
  EXPECT_EQ(parsed->start_ticks, self.start_ticks);
  for (const char* other :
       {"box/127.0.0.1:8080", "", "box/a pid=1 pidns=2", "box pid=1 pidns=2 start=3",
        "box/a pid=x pidns=2 start=3", "box/a pid=1 pidns=2 start=3 more"}) {
    EXPECT_FALSE(notify::ParseLeaseOwner(other).has_value()) << other;
  }
}

TEST(LeaseOwner, OnlyAHolderCertainlyGoneIsTakenBackAtOnce) {
  const notify::LeaseOwner self = notify::ThisProcess("box", "127.0.0.1:9000");
  pid_t child = fork();
  if (child == 0) _exit(0);
  ASSERT_GT(child, 0);
  notify::LeaseOwner dead = notify::ThisProcess("box", "127.0.0.1:8080");
  dead.pid = child;  // same namespace; reaped below, so no such process
  ASSERT_EQ(waitpid(child, nullptr, 0), child);
  EXPECT_TRUE(notify::HolderIsGone(dead, self));
  EXPECT_TRUE(notify::HolderIsGone(notify::FormatLeaseOwner(dead), self));

  notify::LeaseOwner restarted_pid = self;  // a pid reused by a later process
  restarted_pid.address = "127.0.0.1:8080";
  restarted_pid.start_ticks = self.start_ticks - 1;
  EXPECT_TRUE(notify::HolderIsGone(restarted_pid, self));

  notify::LeaseOwner parent = notify::ThisProcess("box", "127.0.0.1:8080");
  parent.pid = getppid();  // running, started when it was
  parent.start_ticks = 0;
  EXPECT_FALSE(notify::HolderIsGone(parent, self)) << "no start time: not known to be gone";

  notify::LeaseOwner same_address = dead;
  same_address.address = self.address;
  same_address.pid_namespace = 12345;  // another container, but it listened where we listen
  EXPECT_TRUE(notify::HolderIsGone(same_address, self));

  notify::LeaseOwner elsewhere = dead;
  elsewhere.host = "other-box";
  EXPECT_FALSE(notify::HolderIsGone(elsewhere, self))
      << "another host's process is not ours to judge";
  notify::LeaseOwner other_namespace = dead;
  other_namespace.pid_namespace = self.pid_namespace + 1;
  EXPECT_FALSE(notify::HolderIsGone(other_namespace, self));
  EXPECT_FALSE(notify::HolderIsGone(self, self)) << "this very process";
  EXPECT_TRUE(notify::HolderIsGone("box/127.0.0.1:9000", self)) << "an older server's plain name";
  EXPECT_FALSE(notify::HolderIsGone("box/127.0.0.1:8080", self));
}

}  // namespace notifications_test
}  // namespace lossguard
