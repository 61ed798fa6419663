// The ingest side of the outbox (notifications and their deliveries) is NotificationWriter, inside
// Analysis.
#include "store/notify_outbox.h"

#include <spdlog/spdlog.h>

#include "store/connections.h"
#include "store/notification_writer.h"
#include "store/stored_names.h"
#include "store/writer.h"

namespace lossguard::store {

namespace {
constexpr const char* kDueNotifications = R"sql(
SELECT n.id, n.event, n.severity, n.state, n.last_step, n.message, n.evidence, n.created_at,
       a.id, r.name, a.kind, a.rank, a.first_step, a.opened_at, a.acked_at, a.attempt, i.id
FROM notification_deliveries d
JOIN notifications n ON n.id = d.notification_id
JOIN alerts a ON a.id = n.alert_id
JOIN runs r ON r.id = a.run_id
CROSS JOIN instance i
WHERE d.target = ? ORDER BY d.notification_id LIMIT ?)sql";

OutboxNotification ReadDue(const Statement& row) {
  OutboxNotification n;
  n.id = row.Int(0);
  n.event = ParseStoredEvent(row.Text(1));
  Alert& alert = n.alert;
  alert.severity = ParseStoredSeverity(row.Text(2));
  alert.state = ParseStoredState(row.Text(3));
  alert.last_step = row.Int(4);
  alert.message = std::string(row.Text(5));
  alert.evidence = nlohmann::json::parse(row.Text(6));
  alert.updated_at = row.Number(7).value_or(0);
  if (alert.state == analyzers::AlertState::kResolved) alert.resolved_at = alert.updated_at;
  alert.id = row.Int(8);
  alert.run = std::string(row.Text(9));
  alert.kind = ParseStoredKind(row.Text(10));
  alert.rank = row.OptionalInt(11);
  alert.first_step = row.Int(12);
  alert.opened_at = row.Number(13).value_or(0);
  alert.acked_at = row.Number(14);
  n.attempt = row.Int(15);
  n.idempotency_key = "lossguard-" + std::string(row.Text(16)) + "-" + std::to_string(n.id);
  return n;
}
}  // namespace

void NotifyOutbox::RegisterTargets(double now) {
  const std::vector<NotifyTarget>& targets = connections_.options().analysis.notify.targets;
  connections_.WriteTransaction([&](Database& db) {
    CachedStatement upsert(
        db,
        "INSERT INTO notification_targets (target, label, seen_at) VALUES (?, ?, "
        "?) ON CONFLICT (target) DO UPDATE SET label = excluded.label, seen_at = "
        "excluded.seen_at");
    for (const NotifyTarget& target : targets) {
      upsert.Reset();
      upsert.Bind(1, target.id).Bind(2, target.label).BindNumber(3, now);
      upsert.Step();
    }
    std::vector<std::pair<std::string, std::string>> gone;
    {
      CachedStatement expired(db,
                              "SELECT target, label FROM notification_targets WHERE seen_at < ?");
      expired.BindNumber(1, now - kTargetExpiry);
      while (expired.Step()) gone.emplace_back(expired.Text(0), expired.Text(1));
    }
    for (const auto& [target, label] : gone) {
      CachedStatement deliveries(db, "DELETE FROM notification_deliveries WHERE target = ?");
      deliveries.Bind(1, target).Step();
      const std::int64_t dropped = db.Changes();
      CachedStatement(db, "DELETE FROM notification_targets WHERE target = ?")
          .Bind(1, target)
          .Step();
      spdlog::warn(
          "notification target {} has not been served by any server for {:.0f} s: removed, with "
          "{} undelivered notifications",
          label, kTargetExpiry, dropped);
    }
    if (!gone.empty()) {
      db.Exec(kDeleteUnwantedNotifications);
    }
  });
}

bool NotifyOutbox::Pending(std::string_view target) {
  return connections_.Reading([&](Database& db) {
    CachedStatement any(db, "SELECT 1 FROM notification_deliveries WHERE target = ? LIMIT 1");
    any.Bind(1, target);
    return any.Step();
  });
}

std::optional<OutboxClaim> NotifyOutbox::Claim(std::string_view target, std::string_view owner,
                                               double now, double lease_seconds,
                                               std::int64_t limit) {
  return connections_.WriteTransaction([&](Database& db) -> std::optional<OutboxClaim> {
    OutboxClaim out;
    {
      CachedStatement claim(
          db,
          "UPDATE notification_targets SET lease_owner = ?1, lease_until = ?2, seen_at = ?3 WHERE "
          "target = ?4 AND next_attempt_at <= ?3 AND (lease_owner IS NULL OR lease_owner = ?1 OR "
          "lease_until < ?3) RETURNING failures, dropped");
      claim.Bind(1, owner).BindNumber(2, now + lease_seconds).BindNumber(3, now).Bind(4, target);
      if (!claim.Step()) return std::nullopt;
      out.failures = claim.Int(0);
      out.dropped = claim.Int(1);
    }
    CachedStatement due(db, kDueNotifications);
    due.Bind(1, target).Bind(2, limit);
    while (due.Step()) out.due.push_back(ReadDue(due));
    return out;
  });
}

void NotifyOutbox::Delivered(std::string_view target, std::string_view owner,
                             std::int64_t notification_id, std::int64_t dropped_reported,
                             double lease_until) {
  connections_.WriteTransaction([&](Database& db) {
    CachedStatement(db,
                    "DELETE FROM notification_deliveries WHERE target = ? AND notification_id = ?")
        .Bind(1, target)
        .Bind(2, notification_id)
        .Step();
    CachedStatement(db, std::string(kDeleteUnwantedNotifications) + " AND id = ?")
        .Bind(1, notification_id)
        .Step();
    CachedStatement(db,
                    "UPDATE notification_targets SET failures = 0, last_error = NULL, "
                    "next_attempt_at = 0, dropped = dropped - ?, lease_until = ? WHERE target = ? "
                    "AND lease_owner = ?")
        .Bind(1, dropped_reported)
        .BindNumber(2, lease_until)
        .Bind(3, target)
        .Bind(4, owner)
        .Step();
  });
}

void NotifyOutbox::Failed(std::string_view target, std::string_view owner, std::string_view error,
                          double next_attempt_at) {
  connections_.WriteTransaction([&](Database& db) {
    CachedStatement(db,
                    "UPDATE notification_targets SET failures = failures + 1, last_error = ?, "
                    "next_attempt_at = ?, lease_owner = NULL, lease_until = NULL WHERE target = ? "
                    "AND lease_owner = ?")
        .Bind(1, error)
        .BindNumber(2, next_attempt_at)
        .Bind(3, target)
        .Bind(4, owner)
        .Step();
  });
}

void NotifyOutbox::Release(std::string_view target, std::string_view owner) {
  connections_.WriteTransaction([&](Database& db) {
    CachedStatement(db,
                    "UPDATE notification_targets SET lease_owner = NULL, lease_until = NULL WHERE "
                    "target = ? AND lease_owner = ?")
        .Bind(1, target)
        .Bind(2, owner)
        .Step();
  });
}

std::vector<NotifyLease> NotifyOutbox::Leases() {
  return connections_.Reading([&](Database& db) {
    CachedStatement rows(db,
                         "SELECT target, label, lease_owner FROM notification_targets WHERE "
                         "lease_owner IS NOT NULL ORDER BY label");
    std::vector<NotifyLease> out;
    while (rows.Step()) {
      out.push_back(
          {std::string(rows.Text(0)), std::string(rows.Text(1)), std::string(rows.Text(2))});
    }
    return out;
  });
}

std::vector<NotifyTargetStatus> NotifyOutbox::Status() {
  return connections_.Reading([&](Database& db) {
    CachedStatement rows(
        db,
        "SELECT t.target, t.label, (SELECT COUNT(*) FROM notification_deliveries d "
        "WHERE d.target = t.target), t.failures, t.dropped, t.next_attempt_at, "
        "t.last_error FROM notification_targets t ORDER BY t.label");
    std::vector<NotifyTargetStatus> out;
    while (rows.Step()) {
      NotifyTargetStatus status;
      status.id = std::string(rows.Text(0));
      status.label = std::string(rows.Text(1));
      status.pending = rows.Int(2);
      status.failures = rows.Int(3);
      status.dropped = rows.Int(4);
      status.next_attempt_at = rows.Number(5).value_or(0);
      if (!rows.IsNull(6)) status.last_error = std::string(rows.Text(6));
      out.push_back(std::move(status));
    }
    return out;
  });
}

}  // namespace lossguard::store
