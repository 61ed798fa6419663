#include "http/session.h"

#include <spdlog/spdlog.h>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/beast/ssl.hpp>
#include <string>

#include "http/header_block.h"
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

std::size_t SessionRegistry::Size() {
  std::lock_guard lock(mutex_);
  return sessions_.size();
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

namespace {

std::string Lower(boost::beast::string_view text) {
  std::string out(text.data(), text.size());
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  while (!out.empty() && (out.back() == ' ' || out.back() == '\t')) out.pop_back();
  std::size_t first = out.find_first_not_of(" \t");
  return first == std::string::npos ? "" : out.substr(first);
}

bool Writes(bhttp::verb method) {
  return method == bhttp::verb::post || method == bhttp::verb::put ||
         method == bhttp::verb::delete_ || method == bhttp::verb::patch;
}

}  // namespace

namespace {
std::variant<beast::tcp_stream, beast::ssl_stream<beast::tcp_stream>> MakeStream(
    net::ip::tcp::socket socket, const SessionContext& context) {
  if (context.tls == nullptr) return beast::tcp_stream(std::move(socket));
  return beast::ssl_stream<beast::tcp_stream>(beast::tcp_stream(std::move(socket)), *context.tls);
}
}  // namespace

Session::Session(net::ip::tcp::socket socket, const SessionContext& context)
    : stream_(MakeStream(std::move(socket), context)), context_(context) {}

Session::~Session() { context_.registry.Remove(this); }

beast::tcp_stream& Session::tcp() {
  return std::visit(
      [](auto& stream) -> beast::tcp_stream& { return beast::get_lowest_layer(stream); }, stream_);
}

void Session::Start() {
  context_.registry.Add(shared_from_this());
  net::dispatch(tcp().get_executor(), [self = shared_from_this()] {
    auto* tls = std::get_if<TlsStream>(&self->stream_);
    if (tls == nullptr) return self->DoRead();
    self->tcp().expires_after(self->context_.limits.request_timeout);
    tls->async_handshake(net::ssl::stream_base::server, [self](beast::error_code ec) {
      if (ec) {
        // A plain-HTTP client, a client that does not trust the certificate, a scanner: nothing
        // to answer in TLS, and nothing the server did wrong.
        spdlog::debug("TLS handshake failed: {}", ec.message());
        return self->Close();
      }
      self->DoRead();
    });
  });
}

void Session::Shutdown() {
  net::post(tcp().get_executor(), [self = shared_from_this()] {
    self->closing_ = true;
    // Idle (no byte of a next request yet): close now. Mid-request, handling or writing: OnRead,
    // Respond and OnWrite close once the response is out.
    bool mid_request = self->parser_ && (self->parser_->got_some() || self->buffer_.size() > 0);
    if (!self->writing_ && !self->handling_ && !mid_request) self->Close();
  });
}

void Session::DoRead() {
  parser_.emplace();
  parser_->body_limit(context_.limits.body_limit);
  parser_->header_limit(static_cast<std::uint32_t>(context_.limits.header_limit));
  tcp().expires_after(context_.limits.idle_timeout);
  ReadHeaderBlock();
}

// Beast joins a folded header line (obs-fold: a line that starts with a space or tab continues the
// one before) into one value before we see it. RFC 9112 lets a server refuse folding, and we do:
// proxies disagree about folded lines, which makes them a way to smuggle a header past one. So the
// raw header block is gathered and checked first; the parser then reads it from the buffer.
void Session::ReadHeaderBlock() {
  const std::string_view data(static_cast<const char*>(buffer_.data().data()), buffer_.size());
  switch (ScanHeaderBlock(data)) {
    case HeaderBlock::kFolded:
      return Refuse(bhttp::status::bad_request, "bad_http",
                    "a header line is folded onto the next (obs-fold, RFC 9112 section 5.2); send "
                    "each header field on one line");
    case HeaderBlock::kComplete:
      return std::visit(
          [this](auto& stream) {
            bhttp::async_read_header(
                stream, buffer_, *parser_,
                [self = shared_from_this()](beast::error_code ec, std::size_t) {
                  self->OnHeader(ec);
                });
          },
          stream_);
    case HeaderBlock::kIncomplete:
      break;
  }
  if (data.size() > context_.limits.header_limit) return RefuseHeaderTooLarge();
  const std::size_t room = context_.limits.header_limit + 1 - data.size();
  std::visit(
      [this, room](auto& stream) {
        stream.async_read_some(buffer_.prepare(std::min<std::size_t>(room, 16 * 1024)),
                               [self = shared_from_this()](beast::error_code ec, std::size_t n) {
                                 self->buffer_.commit(n);
                                 if (ec) return self->OnRead(ec);
                                 self->ReadHeaderBlock();
                               });
      },
      stream_);
}

void Session::RefuseHeaderTooLarge() {
  Refuse(bhttp::status::request_header_fields_too_large, "header_too_large",
         "the request line and headers exceed the server's limit of " +
             std::to_string(context_.limits.header_limit) + " bytes",
         {{"limit_bytes", context_.limits.header_limit}});
}

// The header is in and the body is not: refuse here what would make the body unreadable or
// misread, before a byte of it is taken for anything.
void Session::OnHeader(beast::error_code ec) {
  if (ec) return OnRead(ec);
  const RawRequest& header = parser_->get();
  auto hosts = header.equal_range(bhttp::field::host);
  if (std::distance(hosts.first, hosts.second) > 1) {
    return Refuse(bhttp::status::bad_request, "bad_http",
                  "the request has more than one Host header");
  }
  if (header.version() >= 11 && hosts.first == hosts.second) {
    return Refuse(bhttp::status::bad_request, "bad_http",
                  "an HTTP/1.1 request needs a Host header (RFC 9112 section 3.2)");
  }
  auto transfer_encoding = header.find(bhttp::field::transfer_encoding);
  if (transfer_encoding != header.end() && Lower(transfer_encoding->value()) != "chunked") {
    return Refuse(bhttp::status::not_implemented, "unsupported_transfer_encoding",
                  "Transfer-Encoding \"" + Lower(transfer_encoding->value()) +
                      "\" is not supported; send the body as is (Content-Length) or chunked");
  }
  auto content_encoding = header.find(bhttp::field::content_encoding);
  if (content_encoding != header.end() && Lower(content_encoding->value()) != "identity") {
    return Refuse(bhttp::status::unsupported_media_type, "unsupported_content_encoding",
                  "Content-Encoding \"" + Lower(content_encoding->value()) +
                      "\" is not supported; send the body uncompressed");
  }
  tcp().expires_after(context_.limits.request_timeout);
  std::visit(
      [this](auto& stream) {
        bhttp::async_read(stream, buffer_, *parser_,
                          [self = shared_from_this()](beast::error_code read_ec, std::size_t) {
                            self->OnRead(read_ec);
                          });
      },
      stream_);
}

void Session::OnRead(beast::error_code ec) {
  if (ec == bhttp::error::end_of_stream || ec == net::error::operation_aborted ||
      ec == beast::error::timeout || ec == net::error::connection_reset ||
      ec == net::error::bad_descriptor || ec == net::ssl::error::stream_truncated ||
      ec == net::error::eof) {
    return Close();
  }
  if (ec == bhttp::error::header_limit) return RefuseHeaderTooLarge();
  if (ec == bhttp::error::body_limit) {
    return Refuse(bhttp::status::payload_too_large, "body_too_large",
                  "request body exceeds the server's limit of " +
                      std::to_string(context_.limits.body_limit) + " bytes; send smaller batches",
                  {{"limit_bytes", context_.limits.body_limit}});
  }
  if (ec) {
    // Unparseable HTTP: answer once, then drop the connection since the stream is out of sync.
    return Refuse(bhttp::status::bad_request, "bad_http",
                  "malformed HTTP request: " + ec.message());
  }
  auto request = std::make_shared<RawRequest>(parser_->release());
  parser_.reset();
  Handle(std::move(request));
}

void Session::Handle(std::shared_ptr<RawRequest> request) {
  if (context_.write_pool == nullptr || !Writes(request->method())) {
    return Respond(*request, context_.router.Handle(*request));
  }
  handling_ = true;
  // The guard keeps the I/O context running (Run() returns when it runs out of work) while the
  // handler is away on the pool.
  net::post(*context_.write_pool, [self = shared_from_this(), request,
                                   guard = net::make_work_guard(tcp().get_executor())]() mutable {
    Response response = self->context_.router.Handle(*request);
    net::post(self->tcp().get_executor(),
              [self, request, response = std::move(response), guard = std::move(guard)]() mutable {
                self->handling_ = false;
                self->Respond(*request, std::move(response));
              });
  });
}

void Session::Respond(const RawRequest& request, Response response) {
  response.keep_alive(request.keep_alive() && !closing_);
  Write(std::move(response), request.method() == bhttp::verb::head);
}

void Session::Refuse(bhttp::status status, std::string_view code, std::string message,
                     const nlohmann::json& extra) {
  closing_ = drain_before_close_ = true;
  Write(ErrorResponse(status, code, message, extra));
}

void Session::Write(Response response, bool head) {
  response_ = std::move(response);
  response_->prepare_payload();
  if (head) {
    // The headers GET would send, Content-Length included, and no body.
    const std::size_t length = response_->body().size();
    response_->body().clear();
    response_->content_length(length);
  }
  if (closing_) response_->keep_alive(false);
  bool close = !response_->keep_alive();
  writing_ = true;
  tcp().expires_after(context_.limits.request_timeout);
  std::visit(
      [this, close](auto& stream) {
        bhttp::async_write(stream, *response_,
                           [self = shared_from_this(), close](beast::error_code ec, std::size_t) {
                             self->OnWrite(ec, close);
                           });
      },
      stream_);
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
  tcp().socket().shutdown(net::ip::tcp::socket::shutdown_send, ignored);
  tcp().expires_after(std::chrono::seconds(5));
  drain_buffer_.resize(64 * 1024);
  std::visit(
      [this](auto& stream) {
        stream.async_read_some(net::buffer(drain_buffer_),
                               [self = shared_from_this()](beast::error_code ec, std::size_t) {
                                 if (ec) return self->Close();
                                 self->DrainThenClose();
                               });
      },
      stream_);
}

void Session::Close() {
  beast::error_code ignored;  // the peer may already be gone; nothing to report then
  tcp().socket().shutdown(net::ip::tcp::socket::shutdown_send, ignored);
  tcp().socket().close(ignored);
}

}  // namespace lossguard::http
