#include "support/webhook_sink.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <future>
#include <list>
#include <stdexcept>

namespace lossguard::testing {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;

class WebhookSink::Impl {
 public:
  explicit Impl(std::optional<Tls> tls) : tls_(std::move(tls)) {
    if (tls_) {
      context_.emplace(ssl::context::tls_server);
      context_->use_certificate_chain_file(tls_->certificate_chain.string());
      context_->use_private_key_file(tls_->private_key.string(), ssl::context::pem);
    }
  }

  int Start(int port) {
    std::promise<int> bound;
    auto result = bound.get_future();
    net::post(ioc_, [&] {
      try {
        Listen(port);
        bound.set_value(acceptor_->local_endpoint().port());
      } catch (...) {
        bound.set_exception(std::current_exception());
      }
    });
    if (!thread_.joinable()) thread_ = std::thread([this] { ioc_.run(); });
    return result.get();
  }

  void Stop() {
    std::promise<void> done;
    net::post(ioc_, [&] {
      CloseAll();
      done.set_value();
    });
    done.get_future().wait();
  }

  ~Impl() {
    Stop();
    work_.reset();
    ioc_.stop();
    if (thread_.joinable()) thread_.join();
  }

  void Answer(unsigned status) {
    std::lock_guard lock(mutex_);
    status_ = status;
  }

  void Delay(std::chrono::milliseconds delay) {
    std::lock_guard lock(mutex_);
    delay_ = delay;
  }

  std::chrono::milliseconds delay() const {
    std::lock_guard lock(mutex_);
    return delay_;
  }

  std::vector<Request> Requests() const {
    std::lock_guard lock(mutex_);
    return requests_;
  }

  bool WaitFor(const std::function<bool(const std::vector<Request>&)>& done,
               std::chrono::milliseconds timeout) const {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return done(requests_); });
  }

  bool tls() const { return tls_.has_value(); }

 private:
  // One connection: reads requests and answers each until the peer closes or the sink goes down.
  template <typename Stream>
  struct Session : std::enable_shared_from_this<Session<Stream>> {
    Session(Impl& sink, Stream stream)
        : sink(sink),
          stream(std::move(stream)),
          timer(beast::get_lowest_layer(this->stream).get_executor()) {}
    void Read() {
      request = {};
      http::async_read(stream, buffer, request,
                       [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
                         if (ec) return;
                         self->Answer();
                       });
    }
    void Answer() {
      response = {};
      response.version(11);
      response.result(sink.Record(request));
      response.set(http::field::content_type, "application/json");
      response.body() = R"({"ok":true})";
      response.keep_alive(request.keep_alive());
      response.prepare_payload();
      timer.expires_after(sink.delay());
      timer.async_wait([self = this->shared_from_this()](beast::error_code wait_ec) {
        if (wait_ec) return;
        http::async_write(self->stream, self->response, [self](beast::error_code ec, std::size_t) {
          if (ec || !self->response.keep_alive()) return;
          self->Read();
        });
      });
    }
    void Close() {
      beast::error_code ignored;
      beast::get_lowest_layer(stream).socket().shutdown(tcp::socket::shutdown_both, ignored);
      beast::get_lowest_layer(stream).socket().close(ignored);
    }
    Impl& sink;
    Stream stream;
    net::steady_timer timer;
    beast::flat_buffer buffer;
    http::request<http::string_body> request;
    http::response<http::string_body> response;
  };
  using PlainSession = Session<beast::tcp_stream>;
  using TlsSession = Session<beast::ssl_stream<beast::tcp_stream>>;

  unsigned Record(const http::request<http::string_body>& request) {
    std::lock_guard lock(mutex_);
    Request r;
    r.method = std::string(request.method_string());
    r.target = std::string(request.target());
    r.content_type = std::string(request[http::field::content_type]);
    r.idempotency_key = std::string(request["Idempotency-Key"]);
    r.authorization = std::string(request[http::field::authorization]);
    r.body = request.body();
    r.answered = status_;
    requests_.push_back(std::move(r));
    changed_.notify_all();
    return status_;
  }

  void Listen(int port) {
    acceptor_.emplace(ioc_);
    tcp::endpoint endpoint(net::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port));
    acceptor_->open(endpoint.protocol());
    acceptor_->set_option(net::socket_base::reuse_address(true));
    acceptor_->bind(endpoint);
    acceptor_->listen();
    Accept();
  }

  void Accept() {
    acceptor_->async_accept([this](beast::error_code ec, tcp::socket socket) {
      if (ec) return;  // closed (GoDown) or failed: no more connections
      if (context_) {
        auto session = std::make_shared<TlsSession>(
            *this,
            beast::ssl_stream<beast::tcp_stream>(beast::tcp_stream(std::move(socket)), *context_));
        tls_sessions_.push_back(session);
        session->stream.async_handshake(ssl::stream_base::server,
                                        [session](beast::error_code handshake_ec) {
                                          if (!handshake_ec) session->Read();
                                        });
      } else {
        auto session = std::make_shared<PlainSession>(*this, beast::tcp_stream(std::move(socket)));
        plain_sessions_.push_back(session);
        session->Read();
      }
      Accept();
    });
  }

  void CloseAll() {
    if (acceptor_) {
      beast::error_code ignored;
      acceptor_->close(ignored);
      acceptor_.reset();
    }
    for (auto& weak : plain_sessions_) {
      if (auto session = weak.lock()) session->Close();
    }
    for (auto& weak : tls_sessions_) {
      if (auto session = weak.lock()) session->Close();
    }
    plain_sessions_.clear();
    tls_sessions_.clear();
  }

  std::optional<Tls> tls_;
  std::optional<ssl::context> context_;
  net::io_context ioc_;
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work_{
      net::make_work_guard(ioc_)};
  std::optional<tcp::acceptor> acceptor_;  // on the io thread only
  std::list<std::weak_ptr<PlainSession>> plain_sessions_;
  std::list<std::weak_ptr<TlsSession>> tls_sessions_;
  std::thread thread_;

  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;
  unsigned status_ = 200;               // guarded by mutex_
  std::chrono::milliseconds delay_{0};  // guarded by mutex_
  std::vector<Request> requests_;       // guarded by mutex_
};

WebhookSink::WebhookSink(std::optional<Tls> tls) : impl_(std::make_unique<Impl>(std::move(tls))) {
  port_ = impl_->Start(0);
}

WebhookSink::~WebhookSink() = default;

std::string WebhookSink::Url(const std::string& path) const {
  return std::string(impl_->tls() ? "https" : "http") + "://127.0.0.1:" + std::to_string(port_) +
         path;
}

void WebhookSink::Answer(unsigned status) { impl_->Answer(status); }
void WebhookSink::Delay(std::chrono::milliseconds delay) { impl_->Delay(delay); }
void WebhookSink::GoDown() { impl_->Stop(); }
void WebhookSink::ComeBack() { impl_->Start(port_); }
std::vector<WebhookSink::Request> WebhookSink::Requests() const { return impl_->Requests(); }
bool WebhookSink::WaitFor(const std::function<bool(const std::vector<Request>&)>& done,
                          std::chrono::milliseconds timeout) const {
  return impl_->WaitFor(done, timeout);
}

}  // namespace lossguard::testing
