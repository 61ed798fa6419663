#include "lossguard/collector/record_stream.h"

#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <vector>

#include "lossguard/wire/http_client.h"
#include "lossguard/wire/json_numbers.h"
#include "lossguard/wire/spool.h"
#include "record_ring.h"

namespace lossguard::collector {

namespace {
using Clock = std::chrono::steady_clock;

enum class Outcome { kDelivered, kRetryLater };
}  // namespace

struct RecordStream::Counters {
  std::atomic<std::uint64_t> submitted{0}, delivered{0}, spooled{0}, dropped{0}, rejected{0},
      failed_requests{0};
};

// The sender thread's state: the HTTP client, the spool and the backoff. Touched only by it.
class RecordStream::Sender {
 public:
  explicit Sender(RecordStream& stream)
      : stream_(stream),
        client_(stream.options_.server_url,
                wire::HttpClientOptions{stream.options_.token, stream.options_.request_timeout}),
        backoff_(stream.options_.initial_backoff),
        rng_(std::random_device{}()) {
    if (!stream.options_.spool_path.empty())
      spool_.emplace(stream.options_.spool_path, stream.options_.spool_max_bytes);
  }

  // True when records from an earlier run wait in the spool.
  bool HasBacklog() const { return spool_ && !spool_->empty(); }

  void Run() {
    std::vector<std::string> pending;  // canonical lines taken from the ring, oldest first
    wire::StepRecord record;
    while (true) {
      bool stopping;
      {
        std::unique_lock lock(stream_.mutex_);
        auto wait_until = Clock::now() + stream_.options_.flush_interval;
        if (!Available() && next_attempt_ > Clock::now())
          wait_until = std::min(wait_until, next_attempt_);
        // A flush wakes the sender only when it may try the server now; otherwise the wait ends
        // at the end of the backoff anyway (no spinning while the server is down).
        stream_.wake_sender_.wait_until(lock, wait_until, [&] {
          return stream_.stopping_ || stream_.ring_->size() >= stream_.options_.batch_size ||
                 (stream_.flush_requested_ && Available());
        });
        stopping = stream_.stopping_;
      }
      while (stream_.ring_->TryPop(record)) pending.push_back(wire::CanonicalJson(record));
      DeliverOrPark(pending);
      bool idle = pending.empty() && (!spool_ || spool_->empty()) && stream_.ring_->size() == 0;
      {
        std::lock_guard lock(stream_.mutex_);
        stream_.idle_.store(idle);
        if (idle) stream_.flush_requested_ = false;
      }
      stream_.progress_.notify_all();
      if (stopping) {
        while (stream_.ring_->TryPop(record)) pending.push_back(wire::CanonicalJson(record));
        return Finish(pending);
      }
    }
  }

 private:
  bool Available() const { return Clock::now() >= next_attempt_; }

  // Spooled records go first, then new ones; whatever cannot be sent now is parked in the spool
  // (or kept in memory without one) to keep the order.
  void DeliverOrPark(std::vector<std::string>& pending) {
    while (spool_ && !spool_->empty() && Available()) {
      std::vector<std::string> batch = spool_->Peek(stream_.options_.batch_size);
      if (batch.empty()) break;
      if (Send(batch) == Outcome::kRetryLater) break;
      spool_->Commit(batch.size());
    }
    while (!pending.empty() && (!spool_ || spool_->empty()) && Available()) {
      std::size_t n = std::min(pending.size(), stream_.options_.batch_size);
      std::vector<std::string> batch(pending.begin(),
                                     pending.begin() + static_cast<std::ptrdiff_t>(n));
      if (Send(batch) == Outcome::kRetryLater) break;
      pending.erase(pending.begin(), pending.begin() + static_cast<std::ptrdiff_t>(n));
    }
    if (pending.empty()) return;
    if (spool_) {
      std::size_t written = spool_->Append(pending);
      Count(&Counters::spooled, written);
      if (written < pending.size()) Drop(pending.size() - written, "the spool is full");
      pending.clear();
    } else if (pending.size() > stream_.options_.queue_capacity) {
      std::size_t excess = pending.size() - stream_.options_.queue_capacity;
      pending.erase(pending.begin(), pending.begin() + static_cast<std::ptrdiff_t>(excess));
      Drop(excess, "the server is unreachable and there is no spool (set spool_path)");
    }
  }

  // Delivers `lines`, or says to retry later. A record the server refuses as invalid (400 naming
  // it) can never succeed: it is counted as rejected, warned about, and the rest is sent again.
  Outcome Send(std::vector<std::string> lines) {
    std::string problem;
    while (!lines.empty()) {
      std::string body;
      for (const std::string& line : lines) (body += line) += '\n';
      try {
        wire::HttpResponse response =
            client_.Post("/api/v1/steps", std::move(body), "application/x-ndjson");
        if (response.status == 200) {
          Count(&Counters::delivered, lines.size());
          backoff_ = stream_.options_.initial_backoff;
          warned_unreachable_ = false;
          return Outcome::kDelivered;
        }
        if (response.status == 400) {
          std::size_t bad = RejectedIndex(response.body).value_or(lines.size());
          std::size_t n = bad < lines.size() ? 1 : lines.size();
          Count(&Counters::rejected, n);
          Warn("lossguard: the server refused " + std::to_string(n) +
               " record(s): " + response.body.substr(0, 500));
          if (bad >= lines.size()) return Outcome::kDelivered;  // nothing left worth sending
          lines.erase(lines.begin() + static_cast<std::ptrdiff_t>(bad));
          continue;
        }
        problem = "HTTP " + std::to_string(response.status) + ": " + response.body.substr(0, 300);
      } catch (const wire::HttpError& e) {
        problem = e.what();
      }
      break;
    }
    if (lines.empty()) return Outcome::kDelivered;
    Count(&Counters::failed_requests, 1);
    if (!warned_unreachable_) {
      Warn("lossguard: cannot deliver records (" + problem + "); " +
           (spool_ ? "spooling to " + stream_.options_.spool_path
                   : std::string("holding them in memory")) +
           " and retrying with backoff");
      warned_unreachable_ = true;
    }
    std::uniform_real_distribution<double> jitter(0.5, 1.0);
    next_attempt_ =
        Clock::now() + std::chrono::duration_cast<Clock::duration>(backoff_ * jitter(rng_));
    backoff_ = std::min(backoff_ * 2, stream_.options_.max_backoff);
    return Outcome::kRetryLater;
  }

  static std::optional<std::size_t> RejectedIndex(const std::string& body) {
    try {
      nlohmann::json error = wire::ParseJsonText(body);
      const nlohmann::json& record = error.at("error").at("record");
      if (record.is_number_unsigned()) return record.get<std::size_t>();
    } catch (const nlohmann::json::exception&) {
      // Not the server's error shape: treat the whole batch as refused.
    }
    return std::nullopt;
  }

  // The destructor's last pass: one more delivery attempt per drain_timeout, then park.
  void Finish(std::vector<std::string>& pending) {
    auto deadline = Clock::now() + stream_.options_.drain_timeout;
    while ((!pending.empty() || (spool_ && !spool_->empty())) && Clock::now() < deadline) {
      if (!Available()) std::this_thread::sleep_until(std::min(next_attempt_, deadline));
      DeliverOrPark(pending);
    }
    if (!pending.empty())
      Drop(pending.size(), "the server stayed unreachable and there is no spool");
  }

  void Count(std::atomic<std::uint64_t> Counters::*counter, std::uint64_t n) {
    (stream_.counters_.get()->*counter).fetch_add(n, std::memory_order_relaxed);
  }

  void Drop(std::size_t n, const std::string& why) {
    Count(&Counters::dropped, n);
    Warn("lossguard: dropped " + std::to_string(n) + " records: " + why);
  }

  void Warn(const std::string& message) { stream_.options_.warn(message); }

  RecordStream& stream_;
  wire::HttpClient client_;
  std::optional<wire::Spool> spool_;
  std::chrono::milliseconds backoff_;
  Clock::time_point next_attempt_{};
  bool warned_unreachable_ = false;
  std::mt19937_64 rng_;
};

RecordStream::RecordStream(RecordStreamOptions options)
    : options_(std::move(options)),
      ring_(std::make_unique<RecordRing>(options_.queue_capacity)),
      counters_(std::make_unique<Counters>()) {
  if (!options_.warn)
    options_.warn = [](std::string_view message) { std::cerr << message << std::endl; };
  if (options_.batch_size == 0) throw std::invalid_argument("batch_size must be >= 1, but got 0");
  sender_ = std::make_unique<Sender>(*this);
  idle_ = !sender_->HasBacklog();
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
  idle_.store(false, std::memory_order_release);
  if (!ring_->TryPush(record)) {
    counters_->dropped.fetch_add(1, std::memory_order_relaxed);
    if (!warned_full_.exchange(true)) {
      options_.warn(
          "lossguard: the record queue is full; dropping records (counted in stats().dropped)");
    }
    return false;
  }
  // Wake the sender when a batch is ready. notify_one costs a syscall only when it sleeps; a
  // wake-up lost to a race is made up for by flush_interval.
  if (ring_->size() == options_.batch_size) wake_sender_.notify_one();
  return true;
}

bool RecordStream::Flush(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  flush_requested_ = true;
  wake_sender_.notify_one();
  return progress_.wait_for(lock, timeout, [this] { return idle_.load() && ring_->size() == 0; });
}

StreamStats RecordStream::stats() const {
  StreamStats out;
  out.submitted = counters_->submitted.load();
  out.delivered = counters_->delivered.load();
  out.spooled = counters_->spooled.load();
  out.dropped = counters_->dropped.load();
  out.rejected = counters_->rejected.load();
  out.failed_requests = counters_->failed_requests.load();
  return out;
}

}  // namespace lossguard::collector
