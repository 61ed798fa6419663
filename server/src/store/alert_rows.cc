#include "store/alert_rows.h"

#include <stdexcept>

#include "lossguard/wire/record_codec.h"
#include "store/stored_names.h"

namespace lossguard::store {

namespace {
// A local action at a step the server's episode reaches only a few steps later (it confirms over
// several steps) or ends just before (the step the guard skipped was the episode's last).
constexpr std::int64_t kLocalActionSlack = 8;
}  // namespace

Alert ReadAlert(const Statement& row) {
  Alert alert;
  alert.id = row.Int(0);
  alert.run = std::string(row.Text(1));
  alert.kind = ParseStoredKind(row.Text(2));
  alert.severity = ParseStoredSeverity(row.Text(3));
  alert.state = ParseStoredState(row.Text(4));
  alert.rank = row.OptionalInt(5);
  alert.first_step = row.Int(6);
  alert.last_step = row.Int(7);
  alert.message = std::string(row.Text(8));
  alert.evidence = nlohmann::json::parse(row.Text(9));
  alert.opened_at = row.Number(10).value_or(0);
  alert.updated_at = row.Number(11).value_or(0);
  alert.resolved_at = row.Number(12);
  alert.acked_at = row.Number(13);
  return alert;
}

GuardActionRow ReadGuardAction(const Statement& row) {
  GuardActionRow out;
  out.run = std::string(row.Text(0));
  out.step = row.Int(1);
  out.rank = row.Int(2);
  auto parsed = wire::ParseGuardAction(nlohmann::json::parse(row.Text(3)));
  if (!parsed) {
    throw std::runtime_error("the database holds a malformed guard action of run " + out.run +
                             " at step " + std::to_string(out.step) + ": " +
                             parsed.error().Describe());
  }
  out.action = parsed.value();
  out.received_at = row.Number(4).value_or(0);
  return out;
}

bool ConcernsAlert(const GuardActionRow& action, const Alert& alert) {
  if (action.run != alert.run) return false;
  if (action.action.episode) return *action.action.episode == alert.id;
  return action.action.kind == analyzers::KindName(alert.kind) &&
         action.step + kLocalActionSlack >= alert.first_step &&
         action.step <= alert.last_step + kLocalActionSlack;
}

}  // namespace lossguard::store
