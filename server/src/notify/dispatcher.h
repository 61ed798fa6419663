#pragma once

#include <chrono>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "metrics/server_metrics.h"
#include "notify/lease_owner.h"
#include "notify/webhook.h"
#include "store/store.h"
#include "worker/worker_thread.h"

namespace lossguard::notify {

struct DispatcherOptions {
  std::vector<Webhook> webhooks;
  std::string ca_file;  // https receivers: trust these authorities instead of the system's
  std::chrono::milliseconds timeout{10'000};  // per post
  // Retries of a target that fails: the first after about retry_initial_seconds, doubling up to
  // retry_max_seconds, each delay drawn between half and all of it (jitter, so that servers and
  // targets do not retry in step). A receiver's Retry-After is honoured up to retry_max_seconds.
  double retry_initial_seconds = 1;
  double retry_max_seconds = 300;
  double poll_seconds = 1;  // how often the outbox is looked at for new notifications
  // How long a dispatcher holds a target (renewed at each delivery): another server sharing the
  // database takes over a target whose holder died after this long.
  double lease_seconds = 30;
  // This server in the leases it writes. Started, it takes back at once the leases of a holder
  // that is certainly gone (HolderIsGone: the same host, and its address or its process).
  LeaseOwner owner;
};

// Delivers the outbox to the webhooks, on a thread of its own: each target's notifications in
// order, one at a time, at least once (a notification is deleted only after its receiver answered
// 2xx; a crash in between sends it again, with the same Idempotency-Key header and
// "idempotency_key" field, so that a receiver can drop the repeat). A receiver that answers another
// 4xx than 408/425/429 refuses that notification for good: it is logged and dropped, not retried
// forever ahead of the rest. Thread-safe: Stop() may be called from any thread.
class Dispatcher {
 public:
  Dispatcher(store::Store& store, DispatcherOptions options, metrics::ServerMetrics* metrics);
  ~Dispatcher();
  Dispatcher(const Dispatcher&) = delete;

  // Registers the targets in the store (throws StorageError if it cannot) and starts the thread.
  void Start();
  // Stops the thread, after the post in flight (at most `timeout`).
  void Stop();

  // The delay before retry number `failures` (1 for the first), jittered, honouring Retry-After.
  static double RetryDelay(const DispatcherOptions& options, std::int64_t failures,
                           std::optional<double> retry_after, std::mt19937_64& random);

 private:
  struct Target;
  void Loop();
  // Delivers what the target has due, until it is empty, fails or the dispatcher stops.
  void Serve(Target& target);
  void TakeBackLeasesOfTheGone();

  store::Store& store_;
  DispatcherOptions options_;
  metrics::ServerMetrics* metrics_;
  std::string owner_;  // options_.owner as the leases spell it
  std::vector<Target> targets_;
  std::mt19937_64 random_;
  worker::WorkerThread thread_;
};

}  // namespace lossguard::notify
