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

NotificationWriter::NotificationWriter(Database& db, NotifyOptions options)
    : options_(std::move(options)),
      insert_(db,
              "INSERT INTO notifications (alert_id, event, severity, state, last_step, message, "
              "evidence, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id"),
      deliver_(db,
               "INSERT INTO notification_deliveries (target, notification_id) VALUES (?, ?) ON "
               "CONFLICT DO NOTHING"),
      pending_(db, "SELECT COUNT(*) FROM notification_deliveries WHERE target = ?"),
      oldest_(db,
              "SELECT notification_id FROM notification_deliveries WHERE target = ? ORDER BY "
              "notification_id LIMIT 1 OFFSET ?"),
      drop_(db, "DELETE FROM notification_deliveries WHERE target = ? AND notification_id < ?"),
      count_dropped_(db, "UPDATE notification_targets SET dropped = dropped + ? WHERE target = ?"),
      orphans_(db, std::string(kDeleteUnwantedNotifications) + " AND id < ?") {}

void NotificationWriter::Record(std::int64_t alert_id, const std::optional<StoredEpisode>& before,
                                const analyzers::AlertEvent& after, double now) {
  if (!enabled()) return;
  for (analyzers::NotificationEvent event :
       NotificationEvents(before, after, options_.min_severity)) {
    insert_.Reset();
    insert_.Bind(1, alert_id)
        .Bind(2, analyzers::NotificationEventName(event))
        .Bind(3, analyzers::SeverityName(after.severity))
        .Bind(4, analyzers::AlertStateName(analyzers::EpisodeState(after)));
    insert_.Bind(5, after.last_step).Bind(6, after.message).Bind(7, after.evidence.dump());
    insert_.BindNumber(8, now);
    insert_.Step();
    const std::int64_t id = insert_.Int(0);
    insert_.Reset();
    for (const NotifyTarget& target : options_.targets) {
      deliver_.Reset();
      deliver_.Bind(1, target.id).Bind(2, id);
      deliver_.Step();
    }
    deliver_.Reset();
    recorded_ = true;
  }
}

void NotificationWriter::Finish() {
  if (!recorded_) return;
  recorded_ = false;
  for (const NotifyTarget& target : options_.targets) {
    pending_.Reset();
    pending_.Bind(1, target.id);
    pending_.Step();
    const std::int64_t pending = pending_.Int(0);
    pending_.Reset();
    if (pending <= options_.max_pending) continue;
    const std::int64_t excess = pending - options_.max_pending;
    // The first one kept: everything older goes.
    oldest_.Reset();
    oldest_.Bind(1, target.id).Bind(2, excess);
    if (!oldest_.Step()) {
      oldest_.Reset();
      continue;
    }
    const std::int64_t first_kept = oldest_.Int(0);
    oldest_.Reset();
    drop_.Reset();
    drop_.Bind(1, target.id).Bind(2, first_kept);
    drop_.Step();
    drop_.Reset();
    count_dropped_.Reset();
    count_dropped_.Bind(1, excess).Bind(2, target.id);
    count_dropped_.Step();
    count_dropped_.Reset();
    orphans_.Reset();
    orphans_.Bind(1, first_kept);
    orphans_.Step();
    orphans_.Reset();
    spdlog::warn(
        "notifications to {}: {} undelivered, over the outbox limit of {}; dropped the {} oldest "
        "(the next delivery says how many were dropped)",
        target.label, pending, options_.max_pending, excess);
  }
}

}  // namespace lossguard::store
