#include "api/json_views.h"

#include "lossguard/analyzers/episode_log.h"
#include "lossguard/wire/json_numbers.h"

namespace lossguard::api {

namespace {
nlohmann::json Field(const nlohmann::json& object, const char* name) {
  auto it = object.find(name);
  return it == object.end() ? nlohmann::json() : *it;
}

nlohmann::json OptionalNumber(const std::optional<double>& value) {
  return value ? wire::NumberToJson(*value) : nlohmann::json();
}

nlohmann::json SeriesToJson(const std::vector<store::BlockStats>& buckets,
                            store::SeriesStats store::BlockStats::*series, bool with_nan) {
  nlohmann::json min = nlohmann::json::array(), max = nlohmann::json::array(),
                 nan = nlohmann::json::array();
  for (const store::BlockStats& bucket : buckets) {
    const store::SeriesStats& stats = bucket.*series;
    min.push_back(OptionalNumber(stats.min));
    max.push_back(OptionalNumber(stats.max));
    nan.push_back(stats.nan);
  }
  nlohmann::json out = {{"min", std::move(min)}, {"max", std::move(max)}};
  if (with_nan) out["nan"] = std::move(nan);
  return out;
}

nlohmann::json OpenAlertsToJson(const store::OpenAlertCounts& counts) {
  nlohmann::json out = nlohmann::json::object();
  for (analyzers::Severity severity : analyzers::kAllSeverities)
    out[std::string(analyzers::SeverityName(severity))] = counts[severity];
  return out;
}
}  // namespace

nlohmann::json RunToJson(const store::RunSummary& run) {
  const nlohmann::json& latest = run.latest;
  return {
      {"run", run.name},
      {"records", run.records},
      {"first_step", run.first_step},
      {"latest_step", Field(latest, "step")},
      {"first_seen", run.first_seen},
      {"last_seen", run.last_seen},
      {"config",
       {{"ga_steps", Field(latest, "ga_steps")},
        {"micro_batch_size", Field(latest, "micro_batch_size")},
        {"world_size", Field(latest, "world_size")},
        {"vocab_size", Field(latest, "vocab_size")}}},
      {"last",
       {{"step", Field(latest, "step")},
        {"rank", Field(latest, "rank")},
        {"loss", Field(latest, "loss")},
        {"ref_loss", Field(latest, "ref_loss")},
        {"grad_norm", Field(latest, "grad_norm")},
        {"tokens", Field(latest, "tokens")},
        {"lr", Field(latest, "lr")}}},
      {"open_alerts", OpenAlertsToJson(run.open_alerts)},
  };
}

nlohmann::json AlertToJson(const store::Alert& alert) {
  analyzers::AlertEvent latest;
  latest.action = alert.state == analyzers::AlertState::kResolved
                      ? analyzers::AlertEvent::Action::kResolve
                      : analyzers::AlertEvent::Action::kExtend;
  latest.kind = alert.kind;
  latest.severity = alert.severity;
  latest.rank = alert.rank;
  latest.first_step = alert.first_step;
  latest.last_step = alert.last_step;
  latest.message = alert.message;
  latest.evidence = alert.evidence;
  nlohmann::json out = analyzers::EpisodeToJson(latest);
  out["id"] = alert.id;
  out["run"] = alert.run;
  out["opened_at"] = alert.opened_at;
  out["updated_at"] = alert.updated_at;
  out["resolved_at"] = OptionalNumber(alert.resolved_at);
  out["acked"] = alert.acked_at.has_value();
  out["acked_at"] = OptionalNumber(alert.acked_at);
  out["actions"] = nlohmann::json::array();
  for (const store::GuardActionRow& action : alert.actions)
    out["actions"].push_back(GuardActionToJson(action));
  return out;
}

nlohmann::json GuardActionToJson(const store::GuardActionRow& row) {
  nlohmann::json out = wire::ToJson(row.action);
  out["run"] = row.run;
  out["step"] = row.step;
  out["rank"] = row.rank;
  out["received_at"] = row.received_at;
  return out;
}

nlohmann::json VerdictsToJson(
    const std::map<std::string, store::IngestResult::RunVerdicts>& verdicts) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [run, run_verdicts] : verdicts) {
    nlohmann::json open = nlohmann::json::array();
    for (const store::Alert& alert : run_verdicts.open) {
      open.push_back({{"id", alert.id},
                      {"kind", analyzers::KindName(alert.kind)},
                      {"severity", analyzers::SeverityName(alert.severity)},
                      {"rank", alert.rank ? nlohmann::json(*alert.rank) : nlohmann::json()},
                      {"first_step", alert.first_step},
                      {"last_step", alert.last_step},
                      {"acked", alert.acked_at.has_value()},
                      {"message", alert.message}});
    }
    out[run] = {{"through_step", run_verdicts.through_step}, {"open", std::move(open)}};
  }
  return out;
}

nlohmann::json DownsampledToJson(const store::DownsampledSeries& series) {
  nlohmann::json ranks = nlohmann::json::array();
  for (const store::DownsampledSeries::Rank& rank : series.ranks) {
    nlohmann::json first = nlohmann::json::array(), last = nlohmann::json::array(),
                   count = nlohmann::json::array();
    for (const store::BlockStats& bucket : rank.buckets) {
      first.push_back(bucket.first_step);
      last.push_back(bucket.last_step);
      count.push_back(bucket.n);
    }
    ranks.push_back({
        {"rank", rank.rank},
        {"step", std::move(first)},
        {"last_step", std::move(last)},
        {"count", std::move(count)},
        {"loss", SeriesToJson(rank.buckets, &store::BlockStats::loss, true)},
        {"ref_loss", SeriesToJson(rank.buckets, &store::BlockStats::ref_loss, true)},
        {"grad_norm", SeriesToJson(rank.buckets, &store::BlockStats::grad_norm, true)},
        {"tokens", SeriesToJson(rank.buckets, &store::BlockStats::tokens, false)},
        {"lr", SeriesToJson(rank.buckets, &store::BlockStats::lr, true)},
    });
  }
  return {{"from", series.from},
          {"to", series.to},
          {"bucket_width", series.bucket_width},
          {"ranks", std::move(ranks)}};
}

}  // namespace lossguard::api
