#include "store/alert_book.h"

#include <map>

#include "store/alert_rows.h"
#include "store/clock.h"
#include "store/connections.h"
#include "store/stored_names.h"
#include "store/writer.h"

namespace lossguard::store {

namespace {
// Guard actions are few (one per verdict acted on, bounded by the policies): each run's are read
// once, up to kActionsPerRun, and matched to its alerts in memory.
constexpr std::int64_t kActionsPerRun = 1000;

void AttachGuardActions(Database& db, std::vector<Alert>& alerts) {
  std::map<std::string, std::vector<GuardActionRow>> by_run;
  for (const Alert& alert : alerts) by_run.try_emplace(alert.run);
  if (by_run.empty()) return;
  CachedStatement rows(
      db, std::string(kGuardActionColumns) + " WHERE r.name = ? ORDER BY g.step, g.rank LIMIT ?");
  for (auto& [run, actions] : by_run) {
    rows.Reset();
    rows.Bind(1, run).Bind(2, kActionsPerRun);
    while (rows.Step()) actions.push_back(ReadGuardAction(rows));
  }
  for (Alert& alert : alerts) {
    for (const GuardActionRow& action : by_run.at(alert.run))
      if (ConcernsAlert(action, alert)) alert.actions.push_back(action);
  }
}

std::optional<Alert> AlertById(Database& db, std::int64_t id) {
  std::vector<Alert> alert;
  {
    CachedStatement row(db, std::string(kAlertColumns) + " WHERE a.id = ?");
    row.Bind(1, id);
    if (!row.Step()) return std::nullopt;
    alert.push_back(ReadAlert(row));
  }
  AttachGuardActions(db, alert);
  return std::move(alert.front());
}
}  // namespace

std::vector<Alert> AlertBook::List(const AlertFilter& filter) {
  return connections_.Reading([&](Database& db) -> std::vector<Alert> {
    std::vector<Alert> out;
    {
      CachedStatement rows(
          db, std::string(kAlertColumns) +
                  " WHERE (CAST(?1 AS TEXT) IS NULL OR r.name = ?1) AND (CAST(?2 AS TEXT) "
                  "IS NULL OR a.kind = ?2) AND (CAST(?3 AS TEXT) IS NULL OR a.severity = "
                  "?3) AND (CAST(?4 AS TEXT) IS NULL OR a.state = ?4) ORDER BY a.id LIMIT "
                  "?5");
      auto bind_optional = [&](int index, const std::optional<std::string_view>& value) {
        if (value) {
          rows.Bind(index, *value);
        } else {
          rows.BindNull(index);
        }
      };
      bind_optional(1, filter.run);
      bind_optional(2,
                    filter.kind ? std::optional(analyzers::KindName(*filter.kind)) : std::nullopt);
      bind_optional(3, filter.severity ? std::optional(analyzers::SeverityName(*filter.severity))
                                       : std::nullopt);
      bind_optional(
          4, filter.state ? std::optional(analyzers::AlertStateName(*filter.state)) : std::nullopt);
      rows.Bind(5, filter.limit);
      while (rows.Step()) out.push_back(ReadAlert(rows));
    }
    AttachGuardActions(db, out);
    return out;
  });
}

std::int64_t AlertBook::Insert(const Alert& alert) {
  return connections_.WriteTransaction([&](Database& db) {
    CachedStatement run(db, "SELECT id FROM runs WHERE name = ?");
    if (!run.Bind(1, alert.run).Step())
      throw StorageError("cannot insert an alert for unknown run \"" + alert.run + "\"");
    CachedStatement insert(db,
                           "INSERT INTO alerts (run_id, kind, severity, state, rank, first_step, "
                           "last_step, message, evidence, opened_at, updated_at, resolved_at, "
                           "acked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id");
    insert.Bind(1, run.Int(0))
        .Bind(2, analyzers::KindName(alert.kind))
        .Bind(3, analyzers::SeverityName(alert.severity))
        .Bind(4, analyzers::AlertStateName(alert.state))
        .Bind(5, alert.rank);
    insert.Bind(6, alert.first_step)
        .Bind(7, alert.last_step)
        .Bind(8, alert.message)
        .Bind(9, alert.evidence.dump());
    insert.BindNumber(10, alert.opened_at)
        .BindNumber(11, alert.updated_at)
        .BindNumber(12, alert.resolved_at);
    insert.BindNumber(13, alert.acked_at);
    insert.Step();
    return insert.Int(0);
  });
}

std::optional<Alert> AlertBook::Ack(std::int64_t id) {
  return connections_.WriteTransaction([&](Database& db) -> std::optional<Alert> {
    CachedStatement(db, "UPDATE alerts SET acked_at = COALESCE(acked_at, ?) WHERE id = ?")
        .BindNumber(1, UnixSeconds())
        .Bind(2, id)
        .Step();
    if (db.Changes() == 0) return std::nullopt;
    return AlertById(db, id);
  });
}

std::vector<OpenAlertGroup> AlertBook::OpenGroups() {
  return connections_.Reading([&](Database& db) -> std::vector<OpenAlertGroup> {
    CachedStatement groups(
        db,
        "SELECT r.name, a.kind, a.severity, CASE WHEN a.acked_at IS NULL THEN 0 ELSE 1 "
        "END, COUNT(*) FROM alerts a JOIN runs r ON r.id = a.run_id WHERE a.state = "
        "'open' GROUP BY 1, 2, 3, 4");
    std::vector<OpenAlertGroup> out;
    while (groups.Step()) {
      out.push_back({std::string(groups.Text(0)), ParseStoredKind(groups.Text(1)),
                     ParseStoredSeverity(groups.Text(2)), groups.Int(3) != 0, groups.Int(4)});
    }
    return out;
  });
}

}  // namespace lossguard::store
