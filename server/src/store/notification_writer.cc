#include "store/notification_writer.h"

#include <spdlog/spdlog.h>

#include "lossguard/analyzers/episode_log.h"

namespace lossguard::store {

std::vector<analyzers::NotificationEvent> NotificationEvents(
    const std::optional<StoredEpisode>& before, const analyzers::AlertEvent& after,
    analyzers::Severity min_severity) {
  const bool resolved = after.action == analyzers::AlertEvent::Action::kResolve;
  const bool notified_before = before && before->severity >= min_severity;
  using Event = analyzers::NotificationEvent;
  std::vector<Event> events;
  if (before && !before->open) return events;  // its end was told already (or never notified)
  if (after.severity >= min_severity) {
    if (!notified_before) {
      events.push_back(Event::kOpened);
    } else if (after.severity > before->severity) {
      events.push_back(Event::kEscalated);
    }
  }
  if (resolved && (notified_before || after.severity >= min_severity))
    events.push_back(Event::kResolved);
  return events;
}

namespace {
constexpr const char* kInsertNotification =
    "INSERT INTO notifications (alert_id, event, severity, state, last_step, message, evidence, "
    "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id";
constexpr const char* kDeliver =
    "INSERT INTO notification_deliveries (target, notification_id) VALUES (?, ?) ON CONFLICT DO "
    "NOTHING";
constexpr const char* kPending = "SELECT COUNT(*) FROM notification_deliveries WHERE target = ?";
constexpr const char* kOldestKept =
    "SELECT notification_id FROM notification_deliveries WHERE target = ? ORDER BY "
    "notification_id LIMIT 1 OFFSET ?";
constexpr const char* kDrop =
    "DELETE FROM notification_deliveries WHERE target = ? AND notification_id < ?";
constexpr const char* kCountDropped =
    "UPDATE notification_targets SET dropped = dropped + ? WHERE target = ?";

const std::string& DeleteOrphansSql() {
  static const std::string sql = std::string(kDeleteUnwantedNotifications) + " AND id < ?";
  return sql;
}
}  // namespace

NotificationWriter::NotificationWriter(Database& db, NotifyOptions options)
    : options_(std::move(options)), db_(db) {}

void NotificationWriter::Record(std::int64_t alert_id, const std::optional<StoredEpisode>& before,
                                const analyzers::AlertEvent& after, double now) {
  if (!enabled()) return;
  for (analyzers::NotificationEvent event :
       NotificationEvents(before, after, options_.min_severity)) {
    std::int64_t id = 0;
    {
      CachedStatement insert(db_, kInsertNotification);
      insert.Bind(1, alert_id)
          .Bind(2, analyzers::NotificationEventName(event))
          .Bind(3, analyzers::SeverityName(after.severity))
          .Bind(4, analyzers::AlertStateName(analyzers::EpisodeState(after)));
      insert.Bind(5, after.last_step).Bind(6, after.message).Bind(7, after.evidence.dump());
      insert.BindNumber(8, now);
      insert.Step();
      id = insert.Int(0);
    }
    for (const NotifyTarget& target : options_.targets) {
      CachedStatement(db_, kDeliver).Bind(1, target.id).Bind(2, id).Step();
    }
    recorded_ = true;
  }
}

void NotificationWriter::Finish() {
  if (!recorded_) return;
  recorded_ = false;
  for (const NotifyTarget& target : options_.targets) {
    std::int64_t pending = 0;
    {
      CachedStatement count(db_, kPending);
      count.Bind(1, target.id).Step();
      pending = count.Int(0);
    }
    if (pending <= options_.max_pending) continue;
    const std::int64_t excess = pending - options_.max_pending;
    // The first one kept: everything older goes.
    std::int64_t first_kept = 0;
    {
      CachedStatement oldest(db_, kOldestKept);
      oldest.Bind(1, target.id).Bind(2, excess);
      if (!oldest.Step()) continue;
      first_kept = oldest.Int(0);
    }
    CachedStatement(db_, kDrop).Bind(1, target.id).Bind(2, first_kept).Step();
    CachedStatement(db_, kCountDropped).Bind(1, excess).Bind(2, target.id).Step();
    CachedStatement(db_, DeleteOrphansSql()).Bind(1, first_kept).Step();
    spdlog::warn(
        "notifications to {}: {} undelivered, over the outbox limit of {}; dropped the {} oldest "
        "(the next delivery says how many were dropped)",
        target.label, pending, options_.max_pending, excess);
  }
}

}  // namespace lossguard::store
