#include "metrics/server_metrics.h"

#include <prometheus/gauge.h>
#include <prometheus/text_serializer.h>

#include <cmath>
#include <map>
#include <set>
#include <sstream>

#include "lossguard/wire/guard_action.h"
#include "lossguard/wire/json_numbers.h"

namespace lossguard::metrics {

namespace {
// Request latency buckets, seconds: ingest batches take ~1-10 ms, queries ~1-50 ms.
const prometheus::Histogram::BucketBoundaries kLatencyBuckets = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

std::optional<double> Field(const nlohmann::json& record, const char* name) {
  if (!record.is_object() || !record.contains(name)) return std::nullopt;
  return wire::NumberFromJson(record[name]);
}
}  // namespace

ServerMetrics::ServerMetrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      records_(prometheus::BuildCounter()
                   .Name("lossguard_ingest_records_total")
                   .Help("Records received in acknowledged batches, by outcome: new, duplicate "
                         "(identical to the stored one), replaced (same key, different record)")
                   .Register(*registry_)),
      guard_actions_(prometheus::BuildCounter()
                         .Name("lossguard_guard_actions_total")
                         .Help("Actions trainers' guards reported (a record's guard field), by "
                               "action: warn, lower_lr, skip_step, rollback, stop")
                         .Register(*registry_)),
      rejected_(prometheus::BuildCounter()
                    .Name("lossguard_ingest_rejected_batches_total")
                    .Help("Ingest requests refused, by reason (nothing of them was stored)")
                    .Register(*registry_)),
      latency_(prometheus::BuildHistogram()
                   .Name("lossguard_http_request_duration_seconds")
                   .Help("HTTP request handling time by route pattern, method and status code")
                   .Register(*registry_)),
      notifications_(prometheus::BuildCounter()
                         .Name("lossguard_notifications_total")
                         .Help("Webhook notification posts by target and outcome: delivered, "
                               "rejected (a 4xx answer: dropped), retried (kept in the outbox)")
                         .Register(*registry_)),
      notifications_dropped_(prometheus::BuildCounter()
                                 .Name("lossguard_notifications_dropped_total")
                                 .Help("Notifications dropped from a full outbox, by target, "
                                       "counted when the target is told of them")
                                 .Register(*registry_)) {
  // Every action at 0 from the start: a series that appears only with its first action would make
  // increase() miss that action.
  for (std::string_view action : wire::kGuardActionNames)
    guard_actions_.Add({{"action", std::string(action)}});
}

void ServerMetrics::ObserveRequest(std::string_view route, std::string_view method, unsigned status,
                                   double seconds) {
  latency_
      .Add({{"route", std::string(route)},
            {"method", std::string(method)},
            {"code", std::to_string(status)}},
           kLatencyBuckets)
      .Observe(seconds);
}

void ServerMetrics::CountIngest(const store::IngestResult& r) {
  records_.Add({{"outcome", "new"}})
      .Increment(static_cast<double>(r.accepted - r.duplicates - r.replaced));
  records_.Add({{"outcome", "duplicate"}}).Increment(static_cast<double>(r.duplicates));
  records_.Add({{"outcome", "replaced"}}).Increment(static_cast<double>(r.replaced));
  for (const auto& [action, count] : r.guard_actions)
    guard_actions_.Add({{"action", action}}).Increment(static_cast<double>(count));
}

void ServerMetrics::CountRejectedBatch(std::string_view reason) {
  rejected_.Add({{"reason", std::string(reason)}}).Increment();
}

void ServerMetrics::CountNotification(std::string_view target, std::string_view outcome) {
  notifications_.Add({{"target", std::string(target)}, {"outcome", std::string(outcome)}})
      .Increment();
}

void ServerMetrics::CountDroppedNotifications(std::string_view target, std::int64_t dropped) {
  notifications_dropped_.Add({{"target", std::string(target)}})
      .Increment(static_cast<double>(dropped));
}

std::string ServerMetrics::Render(store::Store& store, const MetricsOptions& options, double now) {
  prometheus::Registry runs;
  auto gauge = [&](const char* name, const char* help) -> prometheus::Family<prometheus::Gauge>& {
    return prometheus::BuildGauge().Name(name).Help(help).Register(runs);
  };
  auto& step = gauge("lossguard_run_step", "Latest optimizer step received for the run");
  auto& loss = gauge("lossguard_run_loss", "Loss the trainer reports, at the latest step");
  auto& ref_loss =
      gauge("lossguard_run_ref_loss", "Correctly token-normalised loss at the latest step");
  auto& ratio = gauge("lossguard_run_loss_scale_ratio",
                      "loss / ref_loss at the latest step (1 when the loss is normalised right)");
  auto& grad_norm = gauge("lossguard_run_grad_norm", "Total gradient L2 norm at the latest step");
  auto& tokens = gauge("lossguard_run_tokens", "Label tokens in the latest step (rank 0)");
  auto& lr = gauge("lossguard_run_lr", "Learning rate the trainer reports at the latest step");
  auto& ga_steps = gauge("lossguard_run_ga_steps", "Gradient-accumulation steps in force");
  auto& micro_batch = gauge("lossguard_run_micro_batch_size", "Per-device micro-batch size");
  auto& world_size = gauge("lossguard_run_world_size", "Data-parallel ranks");
  auto& last_seen = gauge("lossguard_run_last_seen_timestamp_seconds",
                          "When the server last received a record for the run (unix seconds)");
  // Acknowledged episodes have their own gauge: a rule on lossguard_alerts_open stops firing once a
  // person has acked the alert, and the episode stays visible until it resolves.
  auto& open_alerts = gauge("lossguard_alerts_open",
                            "Open, unacknowledged alert episodes by run, kind and severity "
                            "(exported runs only)");
  auto& acked_alerts = gauge("lossguard_alerts_acknowledged",
                             "Open alert episodes a person has acknowledged, by run, kind and "
                             "severity (exported runs only)");
  auto& open_total =
      gauge("lossguard_alerts_open_all_runs",
            "Open, unacknowledged alert episodes of every run (exported or not), by severity");
  auto& active =
      gauge("lossguard_metrics_runs_active", "Runs that sent a record within the export window");
  auto& omitted = gauge("lossguard_metrics_runs_omitted",
                        "Active runs left out of this scrape by the run cap (least recent first)");

  const double since = now - options.run_window_seconds;
  store::ActiveRuns selected = store.runs().Active(since, options.max_runs);
  active.Add({}).Set(static_cast<double>(selected.active));
  omitted.Add({}).Set(static_cast<double>(selected.active - selected.runs.size()));
  std::set<std::string> exported;
  for (const store::RunSummary& run : selected.runs) {
    exported.insert(run.name);
    const prometheus::Labels labels = {{"run", run.name}};
    const nlohmann::json& r = run.latest;
    if (auto v = Field(r, "step")) step.Add(labels).Set(*v);
    std::optional<double> reported = Field(r, "loss"), reference = Field(r, "ref_loss");
    if (reported) loss.Add(labels).Set(*reported);  // NaN and Inf are exported as they are
    if (reference) ref_loss.Add(labels).Set(*reference);
    if (reported && reference) ratio.Add(labels).Set(*reported / *reference);
    if (auto v = Field(r, "grad_norm")) grad_norm.Add(labels).Set(*v);
    if (auto v = Field(r, "tokens")) tokens.Add(labels).Set(*v);
    if (auto v = Field(r, "lr")) lr.Add(labels).Set(*v);
    if (auto v = Field(r, "ga_steps")) ga_steps.Add(labels).Set(*v);
    if (auto v = Field(r, "micro_batch_size")) micro_batch.Add(labels).Set(*v);
    if (auto v = Field(r, "world_size")) world_size.Add(labels).Set(*v);
    last_seen.Add(labels).Set(run.last_seen);
  }
  store::OpenAlertCounts by_severity;
  for (const store::OpenAlertGroup& group : store.alerts().OpenGroups()) {
    if (!group.acknowledged) by_severity[group.severity] += group.count;
    if (!exported.count(group.run)) continue;
    (group.acknowledged ? acked_alerts : open_alerts)
        .Add({{"run", group.run},
              {"kind", std::string(analyzers::KindName(group.kind))},
              {"severity", std::string(analyzers::SeverityName(group.severity))}})
        .Set(static_cast<double>(group.count));
  }
  for (analyzers::Severity severity : analyzers::kAllSeverities) {
    open_total.Add({{"severity", std::string(analyzers::SeverityName(severity))}})
        .Set(static_cast<double>(by_severity[severity]));
  }

  std::vector<store::NotifyTargetStatus> targets = store.outbox().Status();
  if (!targets.empty()) {
    auto& pending = gauge("lossguard_notifications_pending",
                          "Notifications waiting in the outbox for the webhook target");
    auto& failures = gauge("lossguard_notification_target_failures",
                           "Consecutive failed posts to the webhook target (0: it is healthy)");
    auto& unreported = gauge("lossguard_notifications_dropped_unreported",
                             "Notifications dropped from the target's full outbox that it has "
                             "not been told of yet");
    for (const store::NotifyTargetStatus& target : targets) {
      const prometheus::Labels labels = {{"target", target.label}};
      pending.Add(labels).Set(static_cast<double>(target.pending));
      failures.Add(labels).Set(static_cast<double>(target.failures));
      unreported.Add(labels).Set(static_cast<double>(target.dropped));
    }
  }

  std::vector<prometheus::MetricFamily> families = registry_->Collect();
  for (auto& family : runs.Collect()) families.push_back(std::move(family));
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, families);
  return out.str();
}

}  // namespace lossguard::metrics
