#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "lossguard/analyzers/alert_kind.h"
#include "lossguard/wire/guard_action.h"
#include "store/rollup.h"

namespace lossguard::store {

// Open alert episodes of a run, by severity.
class OpenAlertCounts {
 public:
  std::int64_t& operator[](analyzers::Severity s) { return counts_[static_cast<std::size_t>(s)]; }
  std::int64_t operator[](analyzers::Severity s) const {
    return counts_[static_cast<std::size_t>(s)];
  }

 private:
  std::array<std::int64_t, analyzers::kAllSeverities.size()> counts_{};
};

// A run as GET /api/v1/runs shows it. `latest` is the record of the highest step (lowest rank at
// that step), as canonical JSON; its configuration fields are the run's configuration in force.
struct RunSummary {
  std::string name;
  std::int64_t records = 0;
  double first_seen = 0;
  double last_seen = 0;
  std::int64_t first_step = 0;
  nlohmann::json latest;
  OpenAlertCounts open_alerts;
};

// Which runs GET /api/v1/runs lists: in name order, after the cursor `after` (the last name of the
// previous page), whose names start with `prefix`, that sent a record at or after `active_since`
// (unix seconds, server clock), at most `limit` of them.
struct RunListQuery {
  std::optional<std::string> after;
  std::string prefix;
  std::optional<double> active_since;
  std::int64_t limit = 100;
};

// One page of runs; `next` is the cursor for the next page (nullopt on the last page).
struct RunPage {
  std::vector<RunSummary> runs;
  std::optional<std::string> next;
};

// Runs that sent a record since a point in time: the `runs` most recently active (up to a limit),
// and how many there were in all.
struct ActiveRuns {
  std::vector<RunSummary> runs;
  std::size_t active = 0;
};

// Open alert episodes of one (run, kind, severity).
struct OpenAlertGroup {
  std::string run;
  analyzers::Kind kind = analyzers::Kind::kNonFinite;
  analyzers::Severity severity = analyzers::Severity::kInfo;
  bool acknowledged = false;  // a person has acked these episodes (POST .../ack)
  std::int64_t count = 0;
};

struct StepQuery {
  std::int64_t from = 0;
  std::int64_t to = INT64_MAX;
  std::optional<std::int64_t> rank;  // all ranks when absent
  std::int64_t from_rank = 0;        // continuation: at step `from`, start at this rank
  std::int64_t limit = 10'000;
};

// Records in (step, rank) order as canonical JSON texts; `next` is where the following page
// starts when the page was cut at `limit`.
struct StepPage {
  std::vector<std::string> records;
  struct Continuation {
    std::int64_t from;
    std::int64_t from_rank;
  };
  std::optional<Continuation> next;
};

// A downsampled series per rank: buckets aligned to multiples of bucket_width, empty ones omitted.
struct DownsampledSeries {
  std::int64_t from = 0;
  std::int64_t to = 0;
  std::int64_t bucket_width = 1;
  struct Rank {
    std::int64_t rank = 0;
    std::vector<BlockStats> buckets;
  };
  std::vector<Rank> ranks;
};

// What a trainer's guard did, from a stored record's "guard" field.
struct GuardActionRow {
  std::string run;
  std::int64_t step = 0;
  std::int64_t rank = 0;
  wire::GuardAction action;
  double received_at = 0;
};

struct Alert {
  std::int64_t id = 0;
  std::string run;
  analyzers::Kind kind = analyzers::Kind::kNonFinite;
  analyzers::Severity severity = analyzers::Severity::kWarning;
  analyzers::AlertState state = analyzers::AlertState::kOpen;
  std::optional<std::int64_t> rank;
  std::int64_t first_step = 0;
  std::int64_t last_step = 0;
  std::string message;
  nlohmann::json evidence = nlohmann::json::object();
  double opened_at = 0;
  double updated_at = 0;
  std::optional<double> resolved_at;
  std::optional<double> acked_at;
  // What trainers' guards did about this episode: actions naming it, and actions judged by the
  // collector on a step of the same kind within the episode (ListAlerts fills it).
  std::vector<GuardActionRow> actions;
};

struct AlertFilter {
  std::optional<std::string> run;
  std::optional<analyzers::Kind> kind;
  std::optional<analyzers::Severity> severity;
  std::optional<analyzers::AlertState> state;  // any when absent
  std::int64_t limit = 1000;
};

// A webhook the server posts notifications to, as the store knows it: `id` is the SHA-256 of its
// configuration (the URL may hold a secret), `label` what logs and metrics show (no secret).
struct NotifyTarget {
  std::string id;
  std::string label;
};

// What makes notifications: which targets get each one, from which severity on, and how many
// undelivered ones a target keeps before the oldest are dropped.
struct NotifyOptions {
  std::vector<NotifyTarget> targets;  // none: no notification is recorded
  analyzers::Severity min_severity = analyzers::Severity::kWarning;
  std::int64_t max_pending = 10000;
};

// A notification waiting in the outbox for one target. `alert` is the alert as it was when the
// event happened (severity, state, last_step, message, evidence; updated_at is the event's time),
// with the parts that never change (id, run, kind, rank, first_step, opened_at) and its current
// acknowledgement.
struct OutboxNotification {
  std::int64_t id = 0;
  analyzers::NotificationEvent event = analyzers::NotificationEvent::kOpened;
  Alert alert;
  std::int64_t attempt = 0;
  std::string idempotency_key;  // the same for every delivery attempt of this notification
};

// A target taken by one dispatcher: its due notifications, oldest first.
struct OutboxClaim {
  std::int64_t failures = 0;  // consecutive failed attempts so far
  std::int64_t dropped = 0;   // dropped since the last delivery: the next one delivered says so
  std::vector<OutboxNotification> due;
};

// Outcome of one ingested batch. Every record of the batch is durable once this is returned;
// duplicates (identical to what was stored) and replaced (same key, different record) are subsets.
struct IngestResult {
  std::int64_t accepted = 0;
  std::int64_t duplicates = 0;
  std::int64_t replaced = 0;
  // Per run of the batch, what the acknowledgement tells its trainer: the batch's highest step of
  // the run and the run's open episodes at warning or critical once the batch was judged.
  struct RunVerdicts {
    std::int64_t through_step = 0;
    std::vector<Alert> open;
  };
  std::map<std::string, RunVerdicts> verdicts;
  // Guard actions the batch's new and replaced records carried, by action name.
  std::map<std::string, std::int64_t> guard_actions;
};

}  // namespace lossguard::store
