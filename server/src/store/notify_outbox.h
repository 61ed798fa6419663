#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "store/types.h"

namespace lossguard::store {

class Connections;

// A target someone holds (expired leases included).
struct NotifyLease {
  std::string target, label, owner;
};

struct NotifyTargetStatus {
  std::string id, label;
  std::int64_t pending = 0, failures = 0, dropped = 0;
  double next_attempt_at = 0;
  std::optional<std::string> last_error;
};

// The notification outbox, the dispatcher's side: the analyzers fill it inside the ingest
// transaction (NotifyOptions); dispatchers, of this server or others sharing the database, take a
// target at a time under a lease and empty it. Thread-safe. Throws StorageError, with context.
class NotifyOutbox {
 public:
  // A target no server has served for this many seconds (it left every server's configuration) is
  // removed with its undelivered notifications.
  static constexpr double kTargetExpiry = 3600;

  explicit NotifyOutbox(Connections& connections) : connections_(connections) {}

  // The configured targets (StoreOptions), seen now; removes the expired ones.
  void RegisterTargets(double now);
  // Whether the target has notifications waiting (a read: no write while there is nothing to do).
  bool Pending(std::string_view target);
  // Takes the target for `owner` until now + lease_seconds, when no other owner holds it and its
  // retry is due; returns its oldest `limit` notifications, or nullopt when it is not free.
  std::optional<OutboxClaim> Claim(std::string_view target, std::string_view owner, double now,
                                   double lease_seconds, std::int64_t limit);
  // The receiver took (or for good refused) a notification: it leaves the outbox, the target's
  // failures are cleared, `dropped_reported` of its dropped count was told, and the lease is
  // extended to `lease_until`.
  void Delivered(std::string_view target, std::string_view owner, std::int64_t notification_id,
                 std::int64_t dropped_reported, double lease_until);
  // The receiver could not be reached or asked to retry: one more failure; the target is released
  // and waits until next_attempt_at.
  void Failed(std::string_view target, std::string_view owner, std::string_view error,
              double next_attempt_at);
  void Release(std::string_view target, std::string_view owner);
  std::vector<NotifyLease> Leases();
  std::vector<NotifyTargetStatus> Status();

 private:
  Connections& connections_;
};

}  // namespace lossguard::store
