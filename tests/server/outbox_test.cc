// The notification outbox in the store, on each engine: the analyzers' episode changes become
// notifications in the ingest transaction, once each (a restart or a re-sent batch adds none), one
// delivery per target; a target is held by one dispatcher at a time, waits after a failure, and
// keeps at most max_pending undelivered notifications, counting what it dropped.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "e2e/corpus.h"
#include "lossguard/wire/record_codec.h"
#include "server/store_fixtures.h"
#include "store/store.h"

namespace lossguard::store {
namespace outbox_test {

using ::testing::ElementsAreArray;

std::vector<wire::StepRecord> CorpusRecords(const std::string& run) {
  std::vector<wire::StepRecord> out;
  for (const std::string& line : lossguard::testing::Lines(run)) {
    auto record = wire::ParseRecordText(line, out.size());
    if (!record) throw std::runtime_error("corpus line does not parse: " + record.error().message);
    out.push_back(std::move(record).value());
  }
  return out;
}

// Ingests in batches of 50, as a trainer's sender would.
void IngestAll(Store& store, const std::vector<wire::StepRecord>& records, std::size_t from = 0,
               std::size_t to = SIZE_MAX) {
  to = std::min(to, records.size());
  for (std::size_t i = from; i < to; i += 50) {
    store.Ingest({records.begin() + static_cast<std::ptrdiff_t>(i),
                  records.begin() + static_cast<std::ptrdiff_t>(std::min(to, i + 50))});
  }
}

const NotifyTarget kChat{"0000000000000000000000000000000000000000000000000000000000000001",
                         "json:http://chat:80#00000001"};
const NotifyTarget kPager{"0000000000000000000000000000000000000000000000000000000000000002",
                          "slack:https://pager:443#00000002"};

StoreOptions Notifying(std::int64_t max_pending = 10000) {
  StoreOptions options;
  options.analysis.notify.targets = {kChat, kPager};
  options.analysis.notify.max_pending = max_pending;
  return options;
}

// "ALERT_ID EVENT SEVERITY STATE" of everything due for the target, oldest first.
std::vector<std::string> Due(Store& store, const NotifyTarget& target) {
  auto claim = store.outbox().Claim(target.id, "reader", 1e12, 30, 100000);
  if (!claim) throw std::runtime_error("target " + target.label + " is not free");
  store.outbox().Release(target.id, "reader");
  std::vector<std::string> out;
  for (const OutboxNotification& n : claim->due) {
    out.push_back(std::to_string(n.alert.id) + " " +
                  std::string(analyzers::NotificationEventName(n.event)) + " " +
                  std::string(analyzers::SeverityName(n.alert.severity)) + " " +
                  std::string(analyzers::AlertStateName(n.alert.state)));
  }
  return out;
}

// What the alerts say should have been notified, in the order of events per alert.
std::multiset<std::string> Expected(Store& store) {
  std::multiset<std::string> out;
  for (const Alert& alert : store.alerts().List({})) {
    if (alert.severity < analyzers::Severity::kWarning) continue;
    out.insert(std::to_string(alert.id) + " opened");
    if (alert.state == analyzers::AlertState::kResolved)
      out.insert(std::to_string(alert.id) + " resolved");
  }
  return out;
}

std::multiset<std::string> EventsOf(const std::vector<std::string>& due) {
  std::multiset<std::string> out;
  for (const std::string& d : due) {
    std::istringstream in(d);
    std::string id, event;
    in >> id >> event;
    if (event == "escalated") continue;  // whether an episode escalates depends on its data
    out.insert(id + " " + event);
  }
  return out;
}

class OutboxTest : public lossguard::testing::EngineTest {};

TEST_P(OutboxTest, EpisodesOfAGaBugAndASpikeAreNotifiedOncePerTarget) {
  auto store = Open(Notifying());
  store->outbox().RegisterTargets(1000);
  IngestAll(*store, CorpusRecords("bug-sum-no-ga-div"));
  IngestAll(*store, CorpusRecords("bug-lr-spike"));

  const std::vector<std::string> chat = Due(*store, kChat);
  EXPECT_EQ(chat, Due(*store, kPager)) << "every target gets every notification";
  const std::multiset<std::string> expected = Expected(*store);
  ASSERT_GE(expected.size(), 3u) << "the GA bug opens an episode, the spike opens and resolves";
  EXPECT_EQ(EventsOf(chat), expected);
  // Per alert, opened comes first and resolved last.
  std::map<std::string, std::vector<std::string>> by_alert;
  for (const std::string& d : chat) by_alert[d.substr(0, d.find(' '))].push_back(d);
  for (const auto& [id, events] : by_alert) {
    EXPECT_THAT(events.front(), ::testing::HasSubstr(" opened ")) << id;
    for (std::size_t i = 0; i + 1 < events.size(); ++i) {
      EXPECT_THAT(events[i], ::testing::Not(::testing::HasSubstr(" resolved "))) << id;
    }
  }
  // The snapshot is the alert as it was: an "opened" one of a resolved episode still says open.
  for (const std::string& d : chat) {
    if (d.find(" opened ") != std::string::npos) {
      EXPECT_THAT(d, ::testing::EndsWith(" open"));
    }
    if (d.find(" resolved ") != std::string::npos) {
      EXPECT_THAT(d, ::testing::EndsWith(" resolved"));
    }
  }

  // The same records again (a sender retrying): duplicates, no new notification.
  IngestAll(*store, CorpusRecords("bug-lr-spike"));
  EXPECT_EQ(Due(*store, kChat), chat);
}

TEST_P(OutboxTest, ARestartMidRunNeitherLosesNorRepeatsANotification) {
  const auto records = CorpusRecords("bug-lr-spike");
  std::vector<std::string> whole;
  {
    StoreOptions reference = Notifying();
    auto store = Open(reference);
    store->outbox().RegisterTargets(1000);
    IngestAll(*store, records);
    for (const std::string& d : Due(*store, kChat)) whole.push_back(d.substr(d.find(' ')));
  }
  // The same run again under another name, with the store reopened in the middle of the episode.
  std::vector<wire::StepRecord> renamed = records;
  for (wire::StepRecord& r : renamed) r.run = "again";
  {
    auto store = Open(Notifying());
    IngestAll(*store, renamed, 0, 95);
  }
  auto store = Open(Notifying());
  IngestAll(*store, renamed, 95);
  // The notifications of run "again" are those of the first run, event for event.
  AlertFilter again;
  again.run = "again";
  std::set<std::string> again_ids;
  for (const Alert& a : store->alerts().List(again)) again_ids.insert(std::to_string(a.id));
  std::vector<std::string> split;
  for (const std::string& d : Due(*store, kChat)) {
    if (again_ids.count(d.substr(0, d.find(' ')))) split.push_back(d.substr(d.find(' ')));
  }
  ASSERT_FALSE(whole.empty());
  EXPECT_THAT(split, ElementsAreArray(whole));
}

TEST_P(OutboxTest, OneHolderAtATimeAndAFailedTargetWaits) {
  auto store = Open(Notifying());
  store->outbox().RegisterTargets(1000);
  IngestAll(*store, CorpusRecords("bug-sum-no-ga-div"));

  auto held = store->outbox().Claim(kChat.id, "server-a", 2000, 30, 10);
  ASSERT_TRUE(held.has_value());
  ASSERT_FALSE(held->due.empty());
  EXPECT_FALSE(store->outbox().Claim(kChat.id, "server-b", 2010, 30, 10).has_value())
      << "held by server-a until 2030";
  EXPECT_TRUE(store->outbox().Claim(kPager.id, "server-b", 2010, 30, 10).has_value())
      << "targets are held separately";
  EXPECT_TRUE(store->outbox().Claim(kChat.id, "server-a", 2011, 30, 10).has_value())
      << "the holder renews its lease";
  EXPECT_TRUE(store->outbox().Claim(kChat.id, "server-b", 2042, 30, 10).has_value())
      << "an expired lease (its holder died) is taken over";

  store->outbox().Failed(kChat.id, "server-b", "HTTP 503: down", 2100);
  EXPECT_FALSE(store->outbox().Claim(kChat.id, "server-b", 2050, 30, 10).has_value())
      << "not before its retry is due";
  auto retry = store->outbox().Claim(kChat.id, "server-a", 2100, 30, 10);
  ASSERT_TRUE(retry.has_value());
  EXPECT_EQ(retry->failures, 1);
  EXPECT_EQ(retry->due.size(), held->due.size()) << "a failure keeps every notification";

  const std::int64_t first = retry->due.front().id;
  store->outbox().Delivered(kChat.id, "server-a", first, 0, 2130);
  auto after = store->outbox().Claim(kChat.id, "server-a", 2101, 30, 10);
  ASSERT_TRUE(after.has_value());
  EXPECT_EQ(after->failures, 0) << "a delivery clears the failures";
  EXPECT_EQ(after->due.size(), held->due.size() - 1);
  EXPECT_TRUE(after->due.empty() || after->due.front().id != first);
  EXPECT_TRUE(store->outbox().Pending(kPager.id)) << "the other target still has it";
  // Idempotency keys: one per notification, the same at every claim, distinct between them.
  EXPECT_EQ(held->due.front().idempotency_key, retry->due.front().idempotency_key);
  std::set<std::string> keys;
  for (const OutboxNotification& n : held->due) keys.insert(n.idempotency_key);
  EXPECT_EQ(keys.size(), held->due.size());
}

TEST_P(OutboxTest, AFullOutboxDropsTheOldestAndCountsThem) {
  auto store = Open(Notifying(/*max_pending=*/1));
  store->outbox().RegisterTargets(1000);
  IngestAll(*store, CorpusRecords("bug-sum-no-ga-div"));
  IngestAll(*store, CorpusRecords("bug-lr-spike"));
  const std::int64_t made = static_cast<std::int64_t>(Expected(*store).size());
  ASSERT_GE(made, 3);
  auto claim = store->outbox().Claim(kChat.id, "a", 2000, 30, 100);
  ASSERT_TRUE(claim.has_value());
  ASSERT_EQ(claim->due.size(), 1u) << "at most max_pending kept";
  EXPECT_GE(claim->dropped, made - 1) << "the rest were dropped, and counted";
  const auto status = store->outbox().Status();
  ASSERT_EQ(status.size(), 2u);
  for (const NotifyTargetStatus& s : status) EXPECT_EQ(s.pending, 1) << s.label;
  // Delivering the one left, having told the receiver of the drops, clears the count.
  store->outbox().Delivered(kChat.id, "a", claim->due.front().id, claim->dropped, 2030);
  EXPECT_FALSE(store->outbox().Pending(kChat.id));
  auto empty = store->outbox().Claim(kChat.id, "a", 2001, 30, 100);
  ASSERT_TRUE(empty.has_value());
  EXPECT_EQ(empty->dropped, 0);
}

TEST_P(OutboxTest, ATargetNoServerServesExpiresWithItsNotifications) {
  {
    auto store = Open(Notifying());
    store->outbox().RegisterTargets(1000);
    IngestAll(*store, CorpusRecords("bug-sum-no-ga-div"));
    ASSERT_TRUE(store->outbox().Pending(kPager.id));
  }
  StoreOptions chat_only;
  chat_only.analysis.notify.targets = {kChat};
  auto store = Open(chat_only);
  store->outbox().RegisterTargets(1000 + NotifyOutbox::kTargetExpiry - 1);
  EXPECT_TRUE(store->outbox().Pending(kPager.id)) << "not yet: another server may still serve it";
  store->outbox().RegisterTargets(1000 + NotifyOutbox::kTargetExpiry + 10);
  EXPECT_FALSE(store->outbox().Pending(kPager.id));
  EXPECT_TRUE(store->outbox().Pending(kChat.id));
  ASSERT_EQ(store->outbox().Status().size(), 1u);
  EXPECT_EQ(store->outbox().Status()[0].label, kChat.label);
}

TEST_P(OutboxTest, WithoutTargetsNothingIsRecorded) {
  auto store = Open();
  IngestAll(*store, CorpusRecords("bug-sum-no-ga-div"));
  ASSERT_FALSE(store->alerts().List({}).empty());
  auto db = Connect();
  Statement count(*db, "SELECT COUNT(*) FROM notifications");
  ASSERT_TRUE(count.Step());
  EXPECT_EQ(count.Int(0), 0);
}

INSTANTIATE_TEST_SUITE_P(Engines, OutboxTest,
                         ::testing::Values(Backend::kSqlite, Backend::kPostgres),
                         lossguard::testing::BackendName);

}  // namespace outbox_test
}  // namespace lossguard::store
