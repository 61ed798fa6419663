#include "notify/dispatcher.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <memory>

#include "lossguard/client/http_client.h"
#include "store/clock.h"

namespace lossguard::notify {

namespace {
// Notifications taken from the outbox per claim.
constexpr std::int64_t kClaimBatch = 32;
// Targets are re-registered (seen by this server) this often, so that none expires while served.
constexpr double kRegisterEverySeconds = 60;

enum class Outcome { kDelivered, kRejected, kRetry };

struct PostResult {
  Outcome outcome = Outcome::kRetry;
  std::string error;
  std::optional<double> retry_after;
};

std::optional<double> ParseRetryAfter(const std::string& header) {
  double seconds = 0;  // only the delay-seconds form; an HTTP date falls back to the backoff
  auto [end, ec] = std::from_chars(header.data(), header.data() + header.size(), seconds);
  if (ec != std::errc() || end != header.data() + header.size() || !(seconds >= 0)) {
    return std::nullopt;
  }
  return seconds;
}

std::string Snippet(const std::string& body) {
  constexpr std::size_t kMax = 200;
  return body.size() <= kMax ? body : body.substr(0, kMax) + "...";
}
}  // namespace

struct Dispatcher::Target {
  Webhook hook;
  std::unique_ptr<client::HttpClient> http;
  double next_attempt = 0;  // this dispatcher's own wait after a failure
};

Dispatcher::Dispatcher(store::Store& store, DispatcherOptions options,
                       metrics::ServerMetrics* metrics)
    : store_(store),
      options_(std::move(options)),
      metrics_(metrics),
      owner_(FormatLeaseOwner(options_.owner)),
      random_(std::random_device{}()) {
  client::HttpClientOptions http;
  http.timeout = options_.timeout;
  http.ca_file = options_.ca_file;
  for (const Webhook& hook : options_.webhooks) {
    // Throws std::invalid_argument for a CA file that does not load: the server does not start.
    targets_.push_back(Target{hook, std::make_unique<client::HttpClient>(hook.url, http), 0});
  }
}

Dispatcher::~Dispatcher() { Stop(); }

void Dispatcher::Start() {
  if (targets_.empty()) return;
  store_.outbox().RegisterTargets(store::UnixSeconds());
  TakeBackLeasesOfTheGone();
  thread_.Start([this] { Loop(); });
}

// A server killed while it held a target (kill -9 mid-post) left its lease behind. Restarted on
// the same host, its successor knows the holder is gone and delivers at once instead of waiting
// for the lease to run out; another server's lease is waited for.
void Dispatcher::TakeBackLeasesOfTheGone() {
  for (const store::NotifyLease& lease : store_.outbox().Leases()) {
    if (!HolderIsGone(lease.owner, options_.owner)) continue;
    store_.outbox().Release(lease.target, lease.owner);
    spdlog::info("notifications to {}: took back the lease of {}, which is no longer running",
                 lease.label, lease.owner);
  }
}

void Dispatcher::Stop() { thread_.Stop(); }

double Dispatcher::RetryDelay(const DispatcherOptions& options, std::int64_t failures,
                              std::optional<double> retry_after, std::mt19937_64& random) {
  const double exponent = static_cast<double>(std::clamp<std::int64_t>(failures - 1, 0, 60));
  const double delay =
      std::min(options.retry_max_seconds, options.retry_initial_seconds * std::exp2(exponent));
  double jittered = std::uniform_real_distribution<double>(delay / 2, delay)(random);
  if (retry_after) jittered = std::max(jittered, std::min(*retry_after, options.retry_max_seconds));
  return jittered;
}

void Dispatcher::Loop() {
  double registered = store::UnixSeconds();
  do {
    const double now = store::UnixSeconds();
    try {
      if (now - registered >= kRegisterEverySeconds) {
        store_.outbox().RegisterTargets(now);
        registered = now;
      }
      for (Target& target : targets_) {
        if (target.next_attempt <= now && store_.outbox().Pending(target.hook.target.id)) {
          Serve(target);
        }
      }
    } catch (const std::exception& e) {
      // The database is unreachable (a PostgreSQL restart) or failed: nothing was lost, the
      // outbox is where it was; look again at the next poll.
      spdlog::warn("notifications: {}", e.what());
    }
  } while (thread_.Wait(std::chrono::duration<double>(options_.poll_seconds)));
}

void Dispatcher::Serve(Target& target) {
  const std::string& id = target.hook.target.id;
  const std::string& label = target.hook.target.label;
  while (true) {
    double now = store::UnixSeconds();
    std::optional<store::OutboxClaim> claim =
        store_.outbox().Claim(id, owner_, now, options_.lease_seconds, kClaimBatch);
    if (!claim) return;  // another server holds it, or its retry is not due
    if (claim->due.empty()) {
      store_.outbox().Release(id, owner_);
      return;
    }
    std::int64_t dropped = claim->dropped;
    for (const store::OutboxNotification& n : claim->due) {
      PostResult result;
      try {
        client::HttpResponse response =
            target.http->Request("POST", "", WebhookBody(target.hook.format, n, dropped),
                                 "application/json", {{"Idempotency-Key", n.idempotency_key}});
        if (response.status >= 200 && response.status < 300) {
          result.outcome = Outcome::kDelivered;
        } else {
          result.error = "HTTP " + std::to_string(response.status) + ": " + Snippet(response.body);
          const bool retry = response.status == 408 || response.status == 425 ||
                             response.status == 429 || response.status >= 500;
          result.outcome = retry ? Outcome::kRetry : Outcome::kRejected;
          result.retry_after = ParseRetryAfter(response.retry_after);
        }
      } catch (const client::HttpError& e) {
        result.error = e.what();
      }
      now = store::UnixSeconds();
      if (result.outcome == Outcome::kRetry) {
        const double delay = RetryDelay(options_, claim->failures + 1, result.retry_after, random_);
        target.next_attempt = now + delay;
        store_.outbox().Failed(id, owner_, result.error, now + delay);
        if (metrics_) metrics_->CountNotification(label, "retried");
        spdlog::log(claim->failures == 0 ? spdlog::level::warn : spdlog::level::debug,
                    "notification {} to {} failed (attempt {}), retrying in {:.1f} s: {}", n.id,
                    label, claim->failures + 1, delay, result.error);
        return;
      }
      if (result.outcome == Outcome::kRejected) {
        spdlog::error("notification {} ({} of alert {}) refused by {} for good, dropped: {}", n.id,
                      analyzers::NotificationEventName(n.event), n.alert.id, label, result.error);
      } else if (claim->failures > 0) {
        spdlog::info("notifications to {} delivered again after {} failed attempts", label,
                     claim->failures);
      }
      store_.outbox().Delivered(id, owner_, n.id, dropped, now + options_.lease_seconds);
      if (metrics_) {
        metrics_->CountNotification(
            label, result.outcome == Outcome::kDelivered ? "delivered" : "rejected");
        if (dropped > 0) metrics_->CountDroppedNotifications(label, dropped);
      }
      claim->failures = 0;
      dropped = 0;
      target.next_attempt = 0;
      if (thread_.stopping()) {
        store_.outbox().Release(id, owner_);
        return;
      }
    }
  }
}

}  // namespace lossguard::notify
