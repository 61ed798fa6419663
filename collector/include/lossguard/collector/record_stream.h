#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "lossguard/client/ingest_client.h"
#include "lossguard/collector/arg.h"
#include "lossguard/wire/step_record.h"

namespace lossguard::collector {

class RecordRing;

struct RecordStreamOptions {
  LOSSGUARD_ARG(std::string, server_url);  // "http://127.0.0.1:8080" or "https://..."; required
  LOSSGUARD_ARG(std::string, token);       // the server's write token, if it has one
  // https:// only: PEM certificate authorities to verify the server with instead of the system's.
  LOSSGUARD_ARG(std::string, ca_file);
  // Records held in memory before hand-off starts dropping (rounded up to a power of two; the
  // slots are allocated once, up front).
  LOSSGUARD_ARG(std::size_t, queue_capacity) = 16'384;
  LOSSGUARD_ARG(std::size_t, batch_size) = 512;  // records per request
  // A partial batch waits at most this long.
  LOSSGUARD_ARG(std::chrono::milliseconds, flush_interval){500};
  // Send records as soon as they are submitted (batching only what arrives while a request is in
  // flight), so that the server's verdicts come back within a step or two: what a guard needs.
  LOSSGUARD_ARG(bool, send_promptly) = false;
  // Where undelivered records go while the server is unreachable ("" = memory only, so records
  // beyond queue_capacity are dropped). Replayed in order when the server is back, also after a
  // restart of the trainer, or by `lossguard flush`. (Collector fills in a per-run default.)
  LOSSGUARD_ARG(std::string, spool_path);
  LOSSGUARD_ARG(std::uint64_t, spool_max_bytes) = 1ull << 30;
  LOSSGUARD_ARG(std::chrono::milliseconds, initial_backoff){200};
  LOSSGUARD_ARG(std::chrono::milliseconds, max_backoff){30'000};
  LOSSGUARD_ARG(std::chrono::milliseconds, request_timeout){10'000};
  // How long the destructor tries to deliver.
  LOSSGUARD_ARG(std::chrono::milliseconds, drain_timeout){10'000};
  // After the spool fails (disk full, directory removed or unwritable), how long the stream keeps
  // records in memory before it tries the spool again.
  LOSSGUARD_ARG(std::chrono::milliseconds, spool_retry_interval){10'000};
  // Where warnings go (dropped records, server errors); default: one line on stderr.
  LOSSGUARD_ARG(std::function<void(std::string_view)>, warn);
  // Called on the sender thread each time it is about to publish its progress to Flush (after each
  // delivered batch and at the end of each cycle). For tests of that hand-over; must return
  // promptly.
  LOSSGUARD_ARG(std::function<void()>, before_publish);
};

// Counters since construction. submitted = delivered + rejected + dropped + (still queued or
// spooled).
struct StreamStats {
  std::uint64_t submitted = 0;
  std::uint64_t delivered = 0;  // acknowledged by the server (including duplicates it already had)
  std::uint64_t spooled = 0;    // written to the spool at least once
  std::uint64_t dropped = 0;    // queue or spool full: lost, and warned about
  // Refused by the server as invalid (400): warned about. (A refused record whose batch then hits a
  // transport failure is sent, and counted, again.)
  std::uint64_t rejected = 0;
  std::uint64_t failed_requests = 0;  // transport failures and 5xx/401 answers, each retried later
  // Spool I/O failures (including failed reopen attempts). The records they cost, if any, are in
  // dropped; training goes on either way.
  std::uint64_t spool_errors = 0;
};

// Streams step records to a lossguard server on a background thread. Submit() never blocks on the
// network, the disk or a lock: it moves the record into a preallocated lock-free ring (well under a
// microsecond; tests/bench/handoff_bench.cc). The
// sender thread batches, POSTs with keep-alive, retries with exponential backoff and jitter, and
// spools to disk while the server is unreachable. No failure of the network, the server or the
// spool's disk reaches the training thread: each is counted in stats() and warned about. Delivery
// is in submission order and exactly once as the server sees it ((run, step, rank) keys make
// resends duplicates).
//
// Thread-safe: Submit, Flush and stats may be called from any thread.
class RecordStream {
 public:
  // Throws std::invalid_argument for a malformed server_url; std::runtime_error if the spool
  // cannot be opened. Starts the sender thread.
  explicit RecordStream(RecordStreamOptions options);
  // Tries to deliver everything for up to drain_timeout; what is left goes to the spool (or is
  // counted as dropped and warned about, without a spool).
  ~RecordStream();
  RecordStream(const RecordStream&) = delete;
  RecordStream& operator=(const RecordStream&) = delete;

  // Hands a record over. Returns false (and counts it as dropped, warning once) if the queue is
  // full.
  bool Submit(wire::StepRecord record);

  // Waits until every record submitted before the call is delivered (or rejected, or counted as
  // dropped) and the spool is empty; false on timeout. Records submitted meanwhile by other
  // threads do not delay it.
  bool Flush(std::chrono::milliseconds timeout);

  StreamStats stats() const;

  // The run's verdicts from the latest acknowledgement that carried them (its open episodes at
  // warning or critical); nullopt before one, or from a server that does not report them.
  std::optional<client::RunVerdicts> Verdicts(const std::string& run) const;
  // Counts acknowledgements with verdicts: Verdicts() has news when this moved.
  std::uint64_t verdict_generation() const {
    return verdict_generation_.load(std::memory_order_acquire);
  }
  // The spool file in use; "" for none.
  const std::string& spool_path() const { return options_.spool_path(); }

 private:
  class Sender;
  struct Counters;
  void KeepVerdicts(std::map<std::string, client::RunVerdicts> verdicts);  // the sender's
  RecordStreamOptions options_;
  std::unique_ptr<RecordRing> ring_;
  std::unique_ptr<Counters> counters_;
  std::mutex mutex_;  // for the two condition variables and the flags below
  std::condition_variable wake_sender_;
  std::condition_variable progress_;
  bool stopping_ = false;         // guarded by mutex_
  bool flush_requested_ = false;  // guarded by mutex_
  std::uint64_t settled_ = 0;     // guarded by mutex_: accepted records the sender is done with
  bool backlog_ = false;          // guarded by mutex_: the spool holds undelivered records
  std::atomic<std::uint64_t> accepted_{0};  // records Submit put in the ring
  mutable std::mutex verdict_mutex_;
  std::map<std::string, client::RunVerdicts> verdicts_;  // guarded by verdict_mutex_
  std::atomic<std::uint64_t> verdict_generation_{0};
  std::atomic<bool> warned_full_{false};
  std::unique_ptr<Sender> sender_;
  std::thread thread_;
};

}  // namespace lossguard::collector
