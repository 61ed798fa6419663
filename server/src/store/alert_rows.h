#pragma once
// How the alerts and guard_actions tables are read: the column lists and the row readers shared by
// the queries (alert_book.cc) and the ingest acknowledgement (writer.cc).

#include "store/database.h"
#include "store/types.h"

namespace lossguard::store {

// SELECT of an alert and its run's name: append " WHERE ..." on `a` (alerts) and `r` (runs).
inline constexpr const char* kAlertColumns =
    "SELECT a.id, r.name, a.kind, a.severity, a.state, a.rank, a.first_step, a.last_step, "
    "a.message, a.evidence, a.opened_at, a.updated_at, a.resolved_at, a.acked_at FROM alerts a "
    "JOIN runs r ON r.id = a.run_id";

// A row of kAlertColumns. Throws for a kind or severity this build does not know.
Alert ReadAlert(const Statement& row);

// SELECT of guard actions: append " WHERE ..." on `g` (guard_actions) and `r` (runs).
inline constexpr const char* kGuardActionColumns =
    "SELECT r.name, g.step, g.rank, g.detail, g.received_at FROM guard_actions g JOIN runs r ON "
    "r.id = g.run_id";

// A row of kGuardActionColumns.
GuardActionRow ReadGuardAction(const Statement& row);

// Whether a guard action is about this alert: it names the episode, or (judged by the collector
// on a step of its own) it is of the alert's kind and falls within the episode or just after it.
bool ConcernsAlert(const GuardActionRow& action, const Alert& alert);

}  // namespace lossguard::store
