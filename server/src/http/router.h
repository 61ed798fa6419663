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

// Maps (method, path pattern) to handlers. Patterns are literal segments and {name} captures, e.g.
// "/api/v1/runs/{run}/steps". Handle() answers 404 for unknown paths, 405 (with Allow) for known
// paths with another method, 401 for write routes without the bearer token, and 400 for a
// malformed query string — all as JSON errors. A HEAD request is handled by the GET route of its
// path (the caller sends the headers only). Handlers never see sockets. Thread-safe once built.
class Router {
 public:
  using Handler = std::function<Response(const Request&)>;
  // Told of every request handled: the route pattern it matched ("unmatched" for none), method,
  // status and handling time. For metrics; must be cheap and thread-safe.
  using Observer = std::function<void(std::string_view route, std::string_view method,
                                      unsigned status, double seconds)>;

  // `token`: when not empty, routes added with requires_token demand "Authorization: Bearer token".
  explicit Router(std::string token = "") : token_(std::move(token)) {}

  void Add(bhttp::verb method, std::string_view pattern, Handler handler,
           bool requires_token = false);

  Response Handle(const RawRequest& request) const;

  // Call before the router is shared between threads.
  void SetObserver(Observer observer) { observer_ = std::move(observer); }

 private:
  struct Route {
    std::string pattern;
    bhttp::verb method;
    std::vector<std::string> segments;
    Handler handler;
    bool requires_token;
  };
  bool Authorized(const RawRequest& request) const;
  Response Dispatch(const RawRequest& request, std::string_view& route) const;

  std::string token_;
  std::vector<Route> routes_;
  Observer observer_;
};

// Percent-decoding ('+' stays '+'); nullopt for malformed escapes.
std::optional<std::string> PercentDecode(std::string_view text);

}  // namespace lossguard::http
