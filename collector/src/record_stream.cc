#include "lossguard/collector/record_stream.h"

#include <iostream>
#include <optional>
#include <random>
#include <vector>

#include "lossguard/client/ingest_client.h"
#include "lossguard/client/spool.h"
#include "record_ring.h"

namespace lossguard::collector {

namespace {
using Clock = std::chrono::steady_clock;

enum class Outcome { kDelivered, kRetryLater };
}  // namespace

struct RecordStream::Counters {
  std::atomic<std::uint64_t> submitted{0}, delivered{0}, spooled{0}, dropped{0}, rejected{0},
      failed_requests{0}, spool_errors{0};
};

// The sender thread's state: the HTTP client, the spool and the backoff. Touched only by it.
//
// Nothing the sender meets may end the training process: a spool that fails (disk full, directory
// removed or unwritable) is closed, its failure counted and warned about, the records kept in
// memory (bounded by queue_capacity) and the spool reopened every spool_retry_interval.
class RecordStream::Sender {
 public:
  explicit Sender(RecordStream& stream)
      : stream_(stream),
        client_(
            stream.options_.server_url(),
            client::HttpClientOptions{stream.options_.token(), stream.options_.request_timeout(),
                                      stream.options_.ca_file()}),
        backoff_(stream.options_.initial_backoff()),
        rng_(std::random_device{}()) {
    if (!stream.options_.spool_path().empty())
      spool_.emplace(stream.options_.spool_path(), stream.options_.spool_max_bytes());
  }

  // True when records wait in the spool (from an earlier run, or parked during an outage), or were
  // in a spool that failed and may still be found in it when it reopens.
  bool HasBacklog() const { return SpoolHasBacklog() || spool_lines_at_risk_ > 0; }

  void Run() {
    try {
      Loop();
    } catch (const std::exception& e) {
      // A defect, not an outage (those are handled where they happen): stop streaming, keep
      // training. Submit goes on counting what it cannot queue as dropped.
      Warn(std::string("lossguard: the record sender stopped: ") + e.what() +
           "; records from now on are dropped (counted in stats().dropped)");
    }
  }

 private:
  void Loop() {
    std::vector<std::string> pending;  // canonical lines taken from the ring, oldest first
    wire::StepRecord record;
    while (true) {
      bool stopping;
      {
        std::unique_lock lock(stream_.mutex_);
        auto wait_until = Clock::now() + stream_.options_.flush_interval();
        if (!Available() && next_attempt_ > Clock::now())
          wait_until = std::min(wait_until, next_attempt_);
        // A flush wakes the sender only when it may try the server now; otherwise the wait ends
        // at the end of the backoff anyway (no spinning while the server is down).
        stream_.wake_sender_.wait_until(lock, wait_until, [&] {
          const std::size_t queued = stream_.ring_->size();
          return stream_.stopping_ || queued >= stream_.options_.batch_size() ||
                 (stream_.options_.send_promptly() && queued > 0 && Available()) ||
                 (stream_.flush_requested_ && Available());
        });
        stopping = stream_.stopping_;
      }
      // At most a ring's worth per cycle: a producer as fast as this loop must not keep the
      // sender from delivering or spooling (and `pending` from growing without bound).
      for (std::size_t n = stream_.ring_->capacity(); n > 0 && stream_.ring_->TryPop(record); --n)
        pending.push_back(wire::CanonicalJson(record));
      DeliverOrPark(pending);
      Publish();
      if (stopping) {
        while (stream_.ring_->TryPop(record)) pending.push_back(wire::CanonicalJson(record));
        Finish(pending);
        Publish();
        return;
      }
    }
  }

  // Tells Flush how far the sender got: records settled (delivered, rejected, spooled or dropped:
  // nothing more will happen to them in memory) and whether the spool still holds any.
  void Publish() {
    if (stream_.options_.before_publish()) stream_.options_.before_publish()();
    {
      std::lock_guard lock(stream_.mutex_);
      stream_.settled_ = settled_;
      stream_.backlog_ = HasBacklog();
      if (settled_ >= stream_.accepted_.load() && !stream_.backlog_)
        stream_.flush_requested_ = false;
    }
    stream_.progress_.notify_all();
  }

  bool Available() const { return Clock::now() >= next_attempt_; }
  bool SpoolHasBacklog() const { return spool_ && !spool_->empty(); }

  // Spooled records go first, then new ones; whatever cannot be sent now is parked in the spool
  // (or kept in memory without one) to keep the order.
  void DeliverOrPark(std::vector<std::string>& pending) {
    ReopenSpoolIfDue();
    DeliverSpooled();
    while (!pending.empty() && !SpoolHasBacklog() && Available()) {
      std::size_t n = std::min(pending.size(), stream_.options_.batch_size());
      std::vector<std::string> batch(pending.begin(),
                                     pending.begin() + static_cast<std::ptrdiff_t>(n));
      if (Send(batch) == Outcome::kRetryLater) break;
      pending.erase(pending.begin(), pending.begin() + static_cast<std::ptrdiff_t>(n));
      settled_ += n;
      Publish();  // a Flush waiting for these returns now, not after the whole backlog
    }
    Park(pending);
  }

  void DeliverSpooled() {
    try {
      while (SpoolHasBacklog() && Available()) {
        std::vector<std::string> batch = spool_->Peek(stream_.options_.batch_size());
        if (batch.empty()) break;
        if (Send(batch) == Outcome::kRetryLater) break;
        spool_->Commit(batch.size());
      }
    } catch (const std::exception& e) {
      // Delivered lines whose commit failed are sent again after the reopen: the server counts
      // them as duplicates.
      SpoolFailed(e);
    }
  }

  void Park(std::vector<std::string>& pending) {
    if (pending.empty()) return;
    if (spool_) {
      try {
        std::size_t written = spool_->Append(pending);
        Count(&Counters::spooled, written);
        settled_ += pending.size();
        if (written < pending.size()) Drop(pending.size() - written, "the spool is full");
        pending.clear();
        return;
      } catch (const std::exception& e) {
        SpoolFailed(e);  // Append wrote none of them: they stay in memory
      }
    }
    if (pending.size() > stream_.options_.queue_capacity()) {
      std::size_t excess = pending.size() - stream_.options_.queue_capacity();
      pending.erase(pending.begin(), pending.begin() + static_cast<std::ptrdiff_t>(excess));
      settled_ += excess;
      Drop(excess, stream_.options_.spool_path().empty()
                       ? "the server is unreachable and there is no spool (set spool_path)"
                       : "the server is unreachable and the spool is unavailable");
    }
  }

  void SpoolFailed(const std::exception& error) {
    Count(&Counters::spool_errors, 1);
    // A spool that failed to reopen has no lines of its own: those at risk are already counted.
    spool_lines_at_risk_ += spool_ ? spool_->pending_lines() : 0;
    spool_.reset();  // closes it and releases its lock; reopened (and re-read) when retried
    spool_retry_at_ = Clock::now() + stream_.options_.spool_retry_interval();
    spool_warnings_.Warn(std::string("lossguard: the spool failed (") + error.what() +
                         "); holding records in memory (at most queue_capacity) and retrying "
                         "the spool");
  }

  void ReopenSpoolIfDue() {
    if (spool_ || stream_.options_.spool_path().empty() || Clock::now() < spool_retry_at_) return;
    try {
      spool_.emplace(stream_.options_.spool_path(), stream_.options_.spool_max_bytes());
    } catch (const std::exception& e) {
      SpoolFailed(e);  // counted, warned about (rate-limited), retried again later
      return;
    }
    // What the failed spool held and the reopened file no longer has (its directory was removed,
    // say) is lost.
    const std::uint64_t found = spool_->pending_lines();
    if (spool_lines_at_risk_ > found)
      Drop(spool_lines_at_risk_ - found, "they were in a spool file that is gone");
    spool_lines_at_risk_ = 0;
    Warn("lossguard: the spool " + stream_.options_.spool_path() + " is usable again");
  }

  // Delivers `lines`, or says to retry later. A record the server refuses as invalid (400 naming
  // it) can never succeed: it is counted as rejected, warned about, and the rest is sent again.
  Outcome Send(std::vector<std::string> lines) {
    while (!lines.empty()) {
      auto sent = client_.Post(lines);
      if (sent.ok()) {
        Count(&Counters::delivered, lines.size());
        if (sent.value().verdicts) stream_.KeepVerdicts(std::move(*sent.value().verdicts));
        backoff_ = stream_.options_.initial_backoff();
        warned_unreachable_ = false;
        return Outcome::kDelivered;
      }
      const client::IngestRefusal& refusal = sent.error();
      if (refusal.retryable()) return RetryLater(refusal);
      const bool one = refusal.record && *refusal.record < lines.size();
      Count(&Counters::rejected, one ? 1 : lines.size());
      Warn("lossguard: the server refused " + std::to_string(one ? 1 : lines.size()) +
           " record(s): " + refusal.message.substr(0, 500));
      if (!one) return Outcome::kDelivered;  // nothing left worth sending
      lines.erase(lines.begin() + static_cast<std::ptrdiff_t>(*refusal.record));
    }
    return Outcome::kDelivered;
  }

  Outcome RetryLater(const client::IngestRefusal& refusal) {
    Count(&Counters::failed_requests, 1);
    if (!warned_unreachable_) {
      Warn("lossguard: cannot deliver records (" + refusal.Describe().substr(0, 300) + "); " +
           (spool_ ? "spooling to " + stream_.options_.spool_path()
                   : std::string("holding them in memory")) +
           " and retrying with backoff");
      warned_unreachable_ = true;
    }
    std::uniform_real_distribution<double> jitter(0.5, 1.0);
    next_attempt_ =
        Clock::now() + std::chrono::duration_cast<Clock::duration>(backoff_ * jitter(rng_));
    backoff_ = std::min(backoff_ * 2, stream_.options_.max_backoff());
    return Outcome::kRetryLater;
  }

  // The destructor's last pass: one more delivery attempt per drain_timeout, then park.
  void Finish(std::vector<std::string>& pending) {
    auto deadline = Clock::now() + stream_.options_.drain_timeout();
    while ((!pending.empty() || SpoolHasBacklog()) && Clock::now() < deadline) {
      if (!Available()) std::this_thread::sleep_until(std::min(next_attempt_, deadline));
      DeliverOrPark(pending);
    }
    if (!pending.empty()) {
      settled_ += pending.size();
      Drop(pending.size(), "the server stayed unreachable and the records could not be spooled");
    }
  }

  void Count(std::atomic<std::uint64_t> Counters::*counter, std::uint64_t n) {
    (stream_.counters_.get()->*counter).fetch_add(n, std::memory_order_relaxed);
  }

  void Drop(std::uint64_t n, const std::string& why) {
    Count(&Counters::dropped, n);
    loss_warnings_.Warn("lossguard: dropped " + std::to_string(n) + " records: " + why);
  }

  void Warn(const std::string& message) { stream_.options_.warn()(message); }

  // Losses and spool failures during a long outage happen every cycle: one line a minute says so,
  // not thousands.
  class RateLimitedWarnings {
   public:
    explicit RateLimitedWarnings(Sender& sender) : sender_(sender) {}
    void Warn(const std::string& message) {
      const auto now = Clock::now();
      if (warned_ && now - last_ < std::chrono::minutes(1)) {
        ++suppressed_;
        return;
      }
      sender_.Warn(suppressed_ == 0
                       ? message
                       : message + " (and " + std::to_string(suppressed_) +
                             " similar warnings in the last minute; totals in stats())");
      warned_ = true;
      last_ = now;
      suppressed_ = 0;
    }

   private:
    Sender& sender_;
    bool warned_ = false;
    Clock::time_point last_{};
    std::uint64_t suppressed_ = 0;
  };

  RecordStream& stream_;
  client::IngestClient client_;
  std::optional<client::Spool> spool_;     // open and usable; empty without one or after a failure
  std::uint64_t spool_lines_at_risk_ = 0;  // lines a failed spool held, not yet found again
  Clock::time_point spool_retry_at_{};
  std::uint64_t settled_ = 0;
  std::chrono::milliseconds backoff_;
  Clock::time_point next_attempt_{};
  bool warned_unreachable_ = false;
  RateLimitedWarnings loss_warnings_{*this}, spool_warnings_{*this};
  std::mt19937_64 rng_;
};

RecordStream::RecordStream(RecordStreamOptions options)
    : options_(std::move(options)),
      ring_(std::make_unique<RecordRing>(options_.queue_capacity())),
      counters_(std::make_unique<Counters>()) {
  if (!options_.warn())
    options_.warn([](std::string_view message) { std::cerr << message << std::endl; });
  if (options_.batch_size() == 0) throw std::invalid_argument("batch_size must be >= 1, but got 0");
  sender_ = std::make_unique<Sender>(*this);
  backlog_ = sender_->HasBacklog();
  thread_ = std::thread([this] { sender_->Run(); });
}

RecordStream::~RecordStream() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_sender_.notify_one();
  thread_.join();
}

bool RecordStream::Submit(wire::StepRecord record) {
  counters_->submitted.fetch_add(1, std::memory_order_relaxed);
  if (!ring_->TryPush(record)) {
    counters_->dropped.fetch_add(1, std::memory_order_relaxed);
    if (!warned_full_.exchange(true)) {
      options_.warn()(
          "lossguard: the record queue is full; dropping records (counted in stats().dropped)");
    }
    return false;
  }
  accepted_.fetch_add(1, std::memory_order_release);
  // Wake the sender when a batch is ready. The ring is lock-free, so the sender may have checked
  // its wait predicate (under mutex_) before this push and not yet be blocked: a notify sent in
  // that gap is lost and the record would wait out flush_interval. Passing through mutex_ first
  // means the sender either sees the push in its predicate or is already blocked and gets the
  // notify. Uncontended, the lock costs tens of nanoseconds, and it is taken only when waking.
  if (options_.send_promptly() || ring_->size() == options_.batch_size()) {
    { std::lock_guard order_with_sender_check(mutex_); }
    wake_sender_.notify_one();
  }
  return true;
}

void RecordStream::KeepVerdicts(std::map<std::string, client::RunVerdicts> verdicts) {
  {
    std::lock_guard lock(verdict_mutex_);
    for (auto& [run, run_verdicts] : verdicts) verdicts_[run] = std::move(run_verdicts);
  }
  verdict_generation_.fetch_add(1, std::memory_order_release);
}

std::optional<client::RunVerdicts> RecordStream::Verdicts(const std::string& run) const {
  std::lock_guard lock(verdict_mutex_);
  auto found = verdicts_.find(run);
  if (found == verdicts_.end()) return std::nullopt;
  return found->second;
}

bool RecordStream::Flush(std::chrono::milliseconds timeout) {
  // Completion is counted, not flagged: every record accepted before this call must have been
  // settled by the sender, whatever it is doing with records submitted since.
  const std::uint64_t target = accepted_.load(std::memory_order_acquire);
  std::unique_lock lock(mutex_);
  flush_requested_ = true;
  wake_sender_.notify_one();
  return progress_.wait_for(lock, timeout, [&] { return settled_ >= target && !backlog_; });
}

StreamStats RecordStream::stats() const {
  StreamStats out;
  out.submitted = counters_->submitted.load();
  out.delivered = counters_->delivered.load();
  out.spooled = counters_->spooled.load();
  out.dropped = counters_->dropped.load();
  out.rejected = counters_->rejected.load();
  out.failed_requests = counters_->failed_requests.load();
  out.spool_errors = counters_->spool_errors.load();
  return out;
}

}  // namespace lossguard::collector
