#pragma once

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/verb.hpp>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace lossguard::http {

namespace bhttp = boost::beast::http;
using Response = bhttp::response<bhttp::string_body>;
using RawRequest = bhttp::request<bhttp::string_body>;

// A request as handlers see it: decoded path, query parameters and the {name} segments the route
// pattern captured.
struct Request {
  const RawRequest& raw;
  std::string path;
  std::map<std::string, std::string> query;
  std::map<std::string, std::string> params;

  std::string_view body() const { return raw.body(); }
  std::string_view header(bhttp::field field) const;
};

// Who may call a route.
enum class Access {
  kOpen,   // anyone: /healthz (load balancers' probes), the dashboard's static files
  kRead,   // with the read token when there is one (the write token reads too)
  kWrite,  // with the write token when there is one
};

// Maps (method, path pattern) to handlers. Patterns are literal segments and {name} captures, e.g.
// "/api/v1/runs/{run}/steps". Handle() answers 404 for unknown paths, 405 (with Allow) for known
// paths with another method, 401 for a route whose Access the request's bearer token does not
// give, and 400 for a malformed query string — all as JSON errors. A HEAD request is handled by the
// GET route of its path (the caller sends the headers only). Handlers never see sockets.
// Thread-safe once built.
class Router {
 public:
  using Handler = std::function<Response(const Request&)>;
  // Told of every request handled: the route pattern it matched ("unmatched" for none), method,
  // status and handling time. For metrics; must be cheap and thread-safe.
  using Observer = std::function<void(std::string_view route, std::string_view method,
                                      unsigned status, double seconds)>;

  // `write_token`: when not empty, kWrite routes demand "Authorization: Bearer <write_token>".
  // `read_token`: when not empty, kRead routes demand it or the write token.
  explicit Router(std::string write_token = "", std::string read_token = "")
      : write_token_(std::move(write_token)), read_token_(std::move(read_token)) {}

  void Add(bhttp::verb method, std::string_view pattern, Handler handler,
           Access access = Access::kRead);

  Response Handle(const RawRequest& request) const;

  // Call before the router is shared between threads.
  void SetObserver(Observer observer) { observer_ = std::move(observer); }

 private:
  struct Route {
    std::string pattern;
    bhttp::verb method;
    std::vector<std::string> segments;
    Handler handler;
    Access access;
  };
  bool Authorized(const RawRequest& request, Access access) const;
  Response Dispatch(const RawRequest& request, std::string_view& route) const;

  std::string write_token_, read_token_;
  std::vector<Route> routes_;
  Observer observer_;
};

// Percent-decoding ('+' stays '+'); nullopt for malformed escapes.
std::optional<std::string> PercentDecode(std::string_view text);

}  // namespace lossguard::http
