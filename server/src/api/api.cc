// Route table of REST API v1. Each handler validates its input, calls the Store, and shapes JSON;
// the shapes are documented in README.md.
#include "api/api.h"

#include <spdlog/spdlog.h>

#include <charconv>
#include <map>

#include "alert_state_filter.h"
#include "api/json_views.h"
#include "api/params.h"
#include "http/responses.h"
#include "lossguard/wire/record_codec.h"
#include "store/clock.h"

namespace lossguard::api {

namespace bhttp = http::bhttp;

namespace {

using bhttp::status;
using http::ErrorResponse;
using http::JsonResponse;
using http::Request;
using http::Response;

constexpr std::int64_t kMaxStep = INT64_MAX;
constexpr std::int64_t kMaxPageSize = 100'000;
constexpr std::int64_t kMinMaxPoints = 10;
constexpr std::int64_t kMaxMaxPoints = 100'000;
constexpr std::int64_t kDefaultRunPage = 100;
constexpr std::int64_t kMaxRunPage = 1000;

Response BadQuery(const std::string& message) {
  return ErrorResponse(status::bad_request, "bad_query", message);
}

Response NoSuchRun(const std::string& run) {
  return ErrorResponse(status::not_found, "unknown_run", "no run named \"" + run + "\"",
                       {{"run", run}});
}

Response IngestSteps(store::Store& store, metrics::ServerMetrics* metrics, const Request& request) {
  std::string_view content_type = request.header(bhttp::field::content_type);
  std::optional<wire::BodyFormat> format = wire::BodyFormatFromContentType(content_type);
  if (!format) {
    if (metrics) metrics->CountRejectedBatch("unsupported_media_type");
    return ErrorResponse(
        status::unsupported_media_type, "unsupported_media_type",
        "Content-Type must be application/json ({\"records\": [...]}) or application/x-ndjson "
        "(one record per line), but got \"" +
            std::string(content_type) + "\"");
  }
  auto batch = wire::ParseBatch(request.body(), *format);
  if (!batch) {
    if (metrics) metrics->CountRejectedBatch("invalid_batch");
    const wire::RecordError& error = batch.error();
    nlohmann::json extra = {{"field", error.field}};
    extra["record"] = error.record ? nlohmann::json(*error.record) : nlohmann::json();
    return ErrorResponse(status::bad_request, "invalid_batch",
                         error.Describe() + " (nothing from this batch was stored)", extra);
  }
  store::IngestResult result = store.Ingest(batch.value());
  if (metrics) metrics->CountIngest(result);
  return JsonResponse(status::ok, {{"accepted", result.accepted},
                                   {"duplicates", result.duplicates},
                                   {"replaced", result.replaced},
                                   {"verdicts", VerdictsToJson(result.verdicts)}});
}

Response ListGuardActions(store::Store& store, const Request& request) {
  QueryParams query(request);
  if (Status known = query.RejectUnknown({"limit"}); !known) return BadQuery(known.error());
  auto limit = query.Int("limit", 1, kMaxPageSize);
  if (!limit) return BadQuery(limit.error());
  const std::string& name = request.params.at("run");
  if (!store.runs().Get(name)) return NoSuchRun(name);
  nlohmann::json actions = nlohmann::json::array();
  for (const store::GuardActionRow& row :
       store.runs().GuardActions(name, limit.value().value_or(1000)))
    actions.push_back(GuardActionToJson(row));
  return JsonResponse(status::ok, {{"run", name}, {"actions", std::move(actions)}});
}

Response ListRuns(store::Store& store, const Request& request) {
  QueryParams query(request);
  if (Status known = query.RejectUnknown({"limit", "after", "prefix", "active_since"}); !known)
    return BadQuery(known.error());
  auto limit = query.Int("limit", 1, kMaxRunPage);
  if (!limit) return BadQuery(limit.error());
  auto active_since = query.Number("active_since");
  if (!active_since) return BadQuery(active_since.error());
  store::RunListQuery list{.after = query.String("after"),
                           .prefix = query.String("prefix").value_or(""),
                           .active_since = active_since.value(),
                           .limit = limit.value().value_or(kDefaultRunPage)};
  store::RunPage page = store.runs().List(list);
  nlohmann::json runs = nlohmann::json::array();
  for (const store::RunSummary& run : page.runs) runs.push_back(RunToJson(run));
  return JsonResponse(status::ok, {{"runs", std::move(runs)},
                                   {"next", page.next ? nlohmann::json(*page.next) : nullptr}});
}

Response GetRun(store::Store& store, const Request& request) {
  if (Status known = QueryParams(request).RejectUnknown({}); !known) return BadQuery(known.error());
  const std::string& name = request.params.at("run");
  std::optional<store::RunSummary> run = store.runs().Get(name);
  if (!run) return NoSuchRun(name);
  return JsonResponse(status::ok, {{"run", RunToJson(*run)}});
}

Response DeleteRun(store::Store& store, const std::function<void()>& deleted,
                   const Request& request) {
  if (Status known = QueryParams(request).RejectUnknown({}); !known) return BadQuery(known.error());
  const std::string& name = request.params.at("run");
  std::optional<std::int64_t> records = store.deletion().Delete(name);
  if (!records) return NoSuchRun(name);
  spdlog::info("deleted run {} ({} records) on request", name, *records);
  if (deleted) deleted();
  return JsonResponse(status::ok, {{"run", name}, {"deleted", true}, {"records", *records}});
}

Response GetSteps(store::Store& store, const Request& request) {
  QueryParams query(request);
  if (Status known =
          query.RejectUnknown({"from", "to", "rank", "max_points", "limit", "from_rank"});
      !known) {
    return BadQuery(known.error());
  }
  auto from = query.Int("from", 0, kMaxStep);
  auto to = query.Int("to", 0, kMaxStep);
  auto rank = query.Int("rank", 0, kMaxStep);
  auto max_points = query.Int("max_points", kMinMaxPoints, kMaxMaxPoints);
  auto limit = query.Int("limit", 1, kMaxPageSize);
  auto from_rank = query.Int("from_rank", 0, kMaxStep);
  for (const auto* param : {&from, &to, &rank, &max_points, &limit, &from_rank}) {
    if (!*param) return BadQuery(param->error());
  }
  std::int64_t first = from.value().value_or(0);
  std::int64_t last = to.value().value_or(kMaxStep);
  if (last < first)
    return BadQuery("to must be >= from, but got from=" + std::to_string(first) +
                    " to=" + std::to_string(last));
  const std::string& name = request.params.at("run");

  if (max_points.value()) {
    if (limit.value() || from_rank.value())
      return BadQuery("limit and from_rank page raw steps; they do not go with max_points");
    auto series =
        store.runs().Downsampled(name, first, last, rank.value(), *max_points.value() / 2);
    if (!series) return NoSuchRun(name);
    nlohmann::json body = DownsampledToJson(*series);
    body["run"] = name;
    body["max_points"] = *max_points.value();
    return JsonResponse(status::ok, body);
  }

  store::StepQuery step_query{first, last, rank.value(), from_rank.value().value_or(0),
                              limit.value().value_or(10'000)};
  std::optional<store::StepPage> page = store.runs().Steps(name, step_query);
  if (!page) return NoSuchRun(name);
  // Records are stored as canonical JSON: splice them in instead of parsing and re-serialising.
  std::string body = R"({"run":)" + nlohmann::json(name).dump() + R"(,"steps":[)";
  for (std::size_t i = 0; i < page->records.size(); ++i) {
    if (i > 0) body += ',';
    body += page->records[i];
  }
  body += "],\"next\":";
  body +=
      page->next
          ? nlohmann::json{{"from", page->next->from}, {"from_rank", page->next->from_rank}}.dump()
          : "null";
  body += '}';
  return http::JsonTextResponse(status::ok, std::move(body));
}

Response ListAlerts(store::Store& store, const Request& request) {
  QueryParams query(request);
  if (Status known = query.RejectUnknown({"run", "kind", "severity", "state", "limit"}); !known)
    return BadQuery(known.error());
  auto kind = query.Parsed("kind", analyzers::kAllKinds, analyzers::KindName);
  auto severity = query.Parsed("severity", analyzers::kAllSeverities, analyzers::SeverityName);
  auto state = query.Parsed("state", kAllAlertStateFilters, AlertStateFilterName);
  auto limit = query.Int("limit", 1, kMaxPageSize);
  if (!kind) return BadQuery(kind.error());
  if (!severity) return BadQuery(severity.error());
  if (!state) return BadQuery(state.error());
  if (!limit) return BadQuery(limit.error());
  store::AlertFilter filter;
  filter.run = query.String("run");
  filter.kind = kind.value();
  filter.severity = severity.value();
  if (state.value()) filter.state = FilteredState(*state.value());
  filter.limit = limit.value().value_or(1000);
  nlohmann::json alerts = nlohmann::json::array();
  std::map<std::int64_t, std::size_t> index_of;  // alert id -> position in `alerts`
  for (const store::Alert& alert : store.alerts().List(filter)) {
    index_of[alert.id] = alerts.size();
    alerts.push_back(AlertToJson(alert));
    alerts.back()["symptoms"] = nlohmann::json::array();
  }
  // An incident reads from its cause: each alert lists the listed alerts it explains.
  for (const nlohmann::json& alert : alerts) {
    const nlohmann::json* cause =
        alert["evidence"].contains("caused_by") ? &alert["evidence"]["caused_by"] : nullptr;
    if (!cause || !cause->contains("id")) continue;
    if (auto it = index_of.find(cause->at("id").get<std::int64_t>()); it != index_of.end())
      alerts[it->second]["symptoms"].push_back(alert["id"]);
  }
  return JsonResponse(status::ok, {{"alerts", std::move(alerts)}});
}

Response AckAlert(store::Store& store, const Request& request) {
  const std::string& text = request.params.at("id");
  std::int64_t id = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), id);
  if (ec != std::errc() || end != text.data() + text.size() || id < 1) {
    return ErrorResponse(status::bad_request, "bad_alert_id",
                         "alert id must be a positive integer, but got '" + text + "'");
  }
  std::optional<store::Alert> alert = store.alerts().Ack(id);
  if (!alert) return ErrorResponse(status::not_found, "unknown_alert", "no alert with id " + text);
  return JsonResponse(status::ok, {{"alert", AlertToJson(*alert)}});
}

// The database could not be reached (a PostgreSQL restart, a network failure): nothing of the
// request was stored, and the same request can succeed in a moment.
template <typename Handler>
auto Guarded(Handler handler) {
  return [handler](const Request& request) -> Response {
    try {
      return handler(request);
    } catch (const store::StorageError& e) {
      if (!e.unavailable()) throw;  // the router's 500, logged
      spdlog::warn("{} {}: {}", std::string(request.raw.method_string()), request.path, e.what());
      Response response =
          ErrorResponse(status::service_unavailable, "storage_unavailable",
                        std::string(e.what()) + " (nothing of this request was stored; retry)");
      response.set(bhttp::field::retry_after, "1");
      return response;
    }
  };
}

}  // namespace

void RegisterApi(http::Router& router, store::Store& store, metrics::ServerMetrics* metrics,
                 const metrics::MetricsOptions& metrics_options,
                 std::function<void()> run_deleted) {
  using bhttp::verb;
  auto bind = [&store](Response (*handler)(store::Store&, const Request&)) {
    return Guarded([&store, handler](const Request& request) { return handler(store, request); });
  };
  // Open even with a read token: load balancers and orchestrators probe it without credentials, and
  // it tells nothing about the runs.
  router.Add(verb::get, "/healthz", Guarded([&store](const Request&) {
               return JsonResponse(status::ok,
                                   {{"status", "ok"}, {"schema_version", store.SchemaVersion()}});
             }),
             http::Access::kOpen);
  router.Add(verb::post, "/api/v1/steps", Guarded([&store, metrics](const Request& request) {
               return IngestSteps(store, metrics, request);
             }),
             http::Access::kWrite);
  router.Add(verb::get, "/api/v1/runs", bind(ListRuns));
  router.Add(verb::get, "/api/v1/runs/{run}", bind(GetRun));
  router.Add(verb::delete_, "/api/v1/runs/{run}",
             Guarded([&store, run_deleted](const Request& request) {
               return DeleteRun(store, run_deleted, request);
             }),
             http::Access::kWrite);
  router.Add(verb::get, "/api/v1/runs/{run}/steps", bind(GetSteps));
  router.Add(verb::get, "/api/v1/runs/{run}/guard-actions", bind(ListGuardActions));
  router.Add(verb::get, "/api/v1/alerts", bind(ListAlerts));
  router.Add(verb::post, "/api/v1/alerts/{id}/ack", bind(AckAlert), http::Access::kWrite);
  if (metrics) {
    router.Add(
        verb::get, "/metrics", Guarded([&store, metrics, metrics_options](const Request& request) {
          if (Status known = QueryParams(request).RejectUnknown({}); !known)
            return BadQuery(known.error());
          Response response{status::ok, 11};
          response.set(bhttp::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
          response.body() = metrics->Render(store, metrics_options, store::UnixSeconds());
          response.prepare_payload();
          return response;
        }));
  }
}

}  // namespace lossguard::api
