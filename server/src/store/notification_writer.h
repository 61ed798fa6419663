#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "lossguard/analyzers/alert_event.h"
#include "store/database.h"
#include "store/types.h"

namespace lossguard::store {

// Deletes the notifications that no target waits for any more (every delivery done, dropped or
// expired); append " AND id ..." to limit it to some.
inline constexpr const char* kDeleteUnwantedNotifications =
    "DELETE FROM notifications WHERE NOT EXISTS (SELECT 1 FROM notification_deliveries d WHERE "
    "d.notification_id = notifications.id)";

// An episode as stored before this batch changed it.
struct StoredEpisode {
  std::int64_t id = 0;
  analyzers::Severity severity = analyzers::Severity::kInfo;
  bool open = true;
};

// What people are told about one change of an episode, in order: "opened" when it first reaches
// `min_severity` (a new episode, or one that grew from below it), "escalated" when an episode
// already notified grows more severe, "resolved" when an episode that was notified ends (one that
// opens and resolves within a batch gets both). Nothing for an episode that stays below
// `min_severity`, and nothing for a change already stored (an upsert repeated after a restart).
std::vector<analyzers::NotificationEvent> NotificationEvents(
    const std::optional<StoredEpisode>& before, const analyzers::AlertEvent& after,
    analyzers::Severity min_severity);

// The outbox side of the ingest transaction: each notification with one delivery row per
// configured target, written before the caller commits. Not thread-safe (the store's write lock).
class NotificationWriter {
 public:
  NotificationWriter(Database& db, NotifyOptions options);

  bool enabled() const { return !options_.targets.empty(); }
  // Records the notifications of an episode's change (see NotificationEvents); `alert_id` is the
  // episode's row after the upsert.
  void Record(std::int64_t alert_id, const std::optional<StoredEpisode>& before,
              const analyzers::AlertEvent& after, double now);
  // Keeps each target's undelivered notifications within max_pending: the oldest beyond it are
  // dropped (logged, and counted on the target so that its next delivery says so). Once per batch.
  void Finish();

 private:
  NotifyOptions options_;
  bool recorded_ = false;  // this batch recorded a notification
  Database& db_;
};

}  // namespace lossguard::store
