#include "http/session.h"

#include <spdlog/spdlog.h>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>

#include "http/responses.h"

namespace lossguard::http {

namespace beast = boost::beast;
namespace net = boost::asio;

void SessionRegistry::Add(const std::shared_ptr<Session>& session) {
  std::lock_guard lock(mutex_);
  sessions_[session.get()] = session;
}

void SessionRegistry::Remove(const Session* session) {
  std::lock_guard lock(mutex_);
  sessions_.erase(session);
}

void SessionRegistry::ForEach(const std::function<void(const std::shared_ptr<Session>&)>& fn) {
  std::vector<std::shared_ptr<Session>> live;
  {
    std::lock_guard lock(mutex_);
    for (auto& [key, weak] : sessions_) {
      if (auto session = weak.lock()) live.push_back(std::move(session));
    }
  }
  for (const auto& session : live) fn(session);
}

Session::Session(net::ip::tcp::socket socket, const Router& router, SessionRegistry& registry,
                 SessionLimits limits)
    : stream_(std::move(socket)), router_(router), registry_(registry), limits_(limits) {}

Session::~Session() { registry_.Remove(this); }

void Session::Start() {
  registry_.Add(shared_from_this());
  net::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->DoRead(); });
}

void Session::Shutdown() {
  net::post(stream_.get_executor(), [self = shared_from_this()] {
    self->closing_ = true;
    // Idle (no byte of a next request yet): close now. Mid-request or writing: OnRead/OnWrite close
    // once the response is out.
    bool mid_request = self->parser_ && (self->parser_->got_some() || self->buffer_.size() > 0);
    if (!self->writing_ && !mid_request) self->Close();
  });
}

void Session::DoRead() {
  parser_.emplace();
  parser_->body_limit(limits_.body_limit);
  stream_.expires_after(limits_.idle_timeout);
  bhttp::async_read(stream_, buffer_, *parser_,
                    [self = shared_from_this()](beast::error_code ec, std::size_t bytes) {
                      self->OnRead(ec, bytes);
                    });
}

void Session::OnRead(beast::error_code ec, std::size_t) {
  if (ec == bhttp::error::end_of_stream || ec == net::error::operation_aborted ||
      ec == beast::error::timeout || ec == net::error::connection_reset ||
      ec == net::error::bad_descriptor) {
    return Close();
  }
  if (ec == bhttp::error::body_limit) {
    closing_ = drain_before_close_ = true;
    return Write(ErrorResponse(bhttp::status::payload_too_large, "body_too_large",
                               "request body exceeds the server's limit of " +
                                   std::to_string(limits_.body_limit) +
                                   " bytes; send smaller batches",
                               {{"limit_bytes", limits_.body_limit}}));
  }
  if (ec) {
    // Unparseable HTTP: answer once, then drop the connection since the stream is out of sync.
    closing_ = drain_before_close_ = true;
    return Write(ErrorResponse(bhttp::status::bad_request, "bad_http",
                               "malformed HTTP request: " + ec.message()));
  }
  RawRequest request = parser_->release();
  parser_.reset();
  stream_.expires_after(limits_.request_timeout);
  Response response = router_.Handle(request);
  response.keep_alive(request.keep_alive() && !closing_);
  Write(std::move(response));
}

void Session::Write(Response response) {
  response_ = std::move(response);
  response_->prepare_payload();
  if (closing_) response_->keep_alive(false);
  bool close = !response_->keep_alive();
  writing_ = true;
  stream_.expires_after(limits_.request_timeout);
  bhttp::async_write(stream_, *response_,
                     [self = shared_from_this(), close](beast::error_code ec, std::size_t) {
                       self->OnWrite(ec, close);
                     });
}

void Session::OnWrite(beast::error_code ec, bool close) {
  writing_ = false;
  response_.reset();
  if (ec) {
    spdlog::debug("write failed: {}", ec.message());
    return Close();
  }
  if (drain_before_close_) return DrainThenClose();
  if (close || closing_) return Close();
  DoRead();
}

// After an error response the client may still be sending the request body it started; closing a
// socket with unread input makes the kernel send RST, and the client could lose our response. So
// half-close, discard what still arrives (bounded in time), then close.
void Session::DrainThenClose() {
  beast::error_code ignored;
  stream_.socket().shutdown(net::ip::tcp::socket::shutdown_send, ignored);
  stream_.expires_after(std::chrono::seconds(5));
  drain_buffer_.resize(64 * 1024);
  stream_.async_read_some(net::buffer(drain_buffer_),
                          [self = shared_from_this()](beast::error_code ec, std::size_t) {
                            if (ec) return self->Close();
                            self->DrainThenClose();
                          });
}

void Session::Close() {
  beast::error_code ignored;  // the peer may already be gone; nothing to report then
  stream_.socket().shutdown(net::ip::tcp::socket::shutdown_send, ignored);
  stream_.socket().close(ignored);
}

}  // namespace lossguard::http
