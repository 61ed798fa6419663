#pragma once

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace lossguard::testing {

// A webhook receiver on 127.0.0.1 for tests: a real HTTP/1.1 server (Beast; HTTPS when given a
// certificate) that records every request and answers with the status the test sets, or is down
// (not listening: connections are refused) for a while and comes back on the same port.
// Thread-safe.
class WebhookSink {
 public:
  struct Tls {
    std::filesystem::path certificate_chain;  // PEM
    std::filesystem::path private_key;        // PEM
  };
  struct Request {
    std::string method, target, content_type, idempotency_key, authorization, body;
    unsigned answered = 0;  // the status it was answered with
  };

  explicit WebhookSink(std::optional<Tls> tls = std::nullopt);
  ~WebhookSink();
  WebhookSink(const WebhookSink&) = delete;

  int port() const { return port_; }
  // "http[s]://127.0.0.1:PORT" + path.
  std::string Url(const std::string& path = "/hook") const;

  // The status every request gets from now on (200 by default; e.g. 503 to refuse).
  void Answer(unsigned status);
  // How long each answer takes from now on (a slow receiver).
  void Delay(std::chrono::milliseconds delay);
  // Stops listening and drops open connections: a client sees the connection refused.
  void GoDown();
  // Listens again, on the same port.
  void ComeBack();

  std::vector<Request> Requests() const;
  // Waits until `done(requests)` holds; false after `timeout`.
  bool WaitFor(const std::function<bool(const std::vector<Request>&)>& done,
               std::chrono::milliseconds timeout) const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
};

}  // namespace lossguard::testing
