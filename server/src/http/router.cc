#include "http/router.h"

#include <spdlog/spdlog.h>

#include <chrono>

#include "http/responses.h"
#include "lossguard/base/result.h"

namespace lossguard::http {

namespace {

std::vector<std::string> SplitPath(std::string_view path) {
  std::vector<std::string> segments;
  std::size_t start = 1;  // paths start with '/'
  while (start <= path.size()) {
    std::size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    segments.emplace_back(path.substr(start, end - start));
    start = end + 1;
  }
  return segments;
}

bool IsCapture(const std::string& segment) {
  return segment.size() > 2 && segment.front() == '{' && segment.back() == '}';
}

bool Match(const std::vector<std::string>& pattern, const std::vector<std::string>& segments,
           std::map<std::string, std::string>& params) {
  if (pattern.size() != segments.size()) return false;
  std::map<std::string, std::string> captured;
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    if (IsCapture(pattern[i])) {
      if (segments[i].empty()) return false;
      captured[pattern[i].substr(1, pattern[i].size() - 2)] = segments[i];
    } else if (pattern[i] != segments[i]) {
      return false;
    }
  }
  params = std::move(captured);
  return true;
}

// Constant-time comparison, so that response timing does not reveal how much of a token matched.
bool SameSecret(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (std::size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace

std::string_view Request::header(bhttp::field field) const {
  auto value = raw[field];
  return {value.data(), value.size()};
}

std::optional<std::string> PercentDecode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out += text[i];
      continue;
    }
    if (i + 2 >= text.size() || !std::isxdigit(static_cast<unsigned char>(text[i + 1])) ||
        !std::isxdigit(static_cast<unsigned char>(text[i + 2]))) {
      return std::nullopt;
    }
    out += static_cast<char>(std::stoi(std::string(text.substr(i + 1, 2)), nullptr, 16));
    i += 2;
  }
  return out;
}

void Router::Add(bhttp::verb method, std::string_view pattern, Handler handler, Access access) {
  routes_.push_back(
      Route{std::string(pattern), method, SplitPath(pattern), std::move(handler), access});
}

bool Router::Authorized(const RawRequest& request, Access access) const {
  if (access == Access::kOpen) return true;
  if (access == Access::kWrite ? write_token_.empty() : read_token_.empty()) return true;
  auto header = request[bhttp::field::authorization];
  std::string_view value(header.data(), header.size());
  constexpr std::string_view kBearer = "Bearer ";
  if (value.substr(0, kBearer.size()) != kBearer) return false;
  const std::string_view presented = value.substr(kBearer.size());
  // Both comparisons always run: the timing does not say which token was close.
  const bool writer = !write_token_.empty() && SameSecret(presented, write_token_);
  const bool reader = access == Access::kRead && SameSecret(presented, read_token_);
  return writer || reader;
}

Response Router::Handle(const RawRequest& raw) const {
  if (!observer_) {
    std::string_view route;
    return Dispatch(raw, route);
  }
  const auto start = std::chrono::steady_clock::now();
  std::string_view route = "unmatched";
  Response response = Dispatch(raw, route);
  observer_(route, std::string_view(raw.method_string().data(), raw.method_string().size()),
            response.result_int(),
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  return response;
}

namespace {
// The request's path and query parameters, percent-decoded; a 400 when the target is malformed.
Result<Request, Response> ParseTarget(const RawRequest& raw) {
  std::string_view target(raw.target().data(), raw.target().size());
  std::size_t question = target.find('?');
  std::optional<std::string> path = PercentDecode(target.substr(0, question));
  if (!path || path->empty() || path->front() != '/') {
    return ErrorResponse(bhttp::status::bad_request, "bad_target", "malformed request target");
  }
  Request request{raw, *path, {}, {}};
  if (question != std::string_view::npos) {
    std::string_view query = target.substr(question + 1);
    while (!query.empty()) {
      std::size_t amp = query.find('&');
      std::string_view pair = query.substr(0, amp);
      query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
      if (pair.empty()) continue;
      std::size_t eq = pair.find('=');
      auto key = PercentDecode(pair.substr(0, eq));
      auto value =
          PercentDecode(eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1));
      if (!key || !value) {
        return ErrorResponse(bhttp::status::bad_request, "bad_query",
                             "malformed percent-escape in query string");
      }
      request.query[*key] = *value;
    }
  }
  return request;
}

// Runs a route's handler: a failure inside it (storage, mostly) is a 500 that says why, logged.
Response Invoke(const Router::Handler& handler, const Request& request) {
  try {
    return handler(request);
  } catch (const std::exception& e) {
    // Nothing is half-done: every write runs in a transaction that rolls back.
    spdlog::error("{} {}: {}", std::string(request.raw.method_string()), request.path, e.what());
    return ErrorResponse(bhttp::status::internal_server_error, "internal_error", e.what());
  }
}
}  // namespace

Response Router::Dispatch(const RawRequest& raw, std::string_view& route_pattern) const {
  Result<Request, Response> parsed = ParseTarget(raw);
  if (!parsed) return parsed.error();
  Request& request = parsed.value();
  std::vector<std::string> segments = SplitPath(request.path);
  std::vector<std::string> allowed;
  for (const Route& route : routes_) {
    std::map<std::string, std::string> params;
    if (!Match(route.segments, segments, params)) continue;
    // HEAD is GET without the body (Session drops it): every GET route answers HEAD.
    const bool head_of_get = raw.method() == bhttp::verb::head && route.method == bhttp::verb::get;
    if (route.method != raw.method() && !head_of_get) {
      allowed.emplace_back(bhttp::to_string(route.method));
      if (route.method == bhttp::verb::get) allowed.emplace_back("HEAD");
      continue;
    }
    route_pattern = route.pattern;
    if (!Authorized(raw, route.access)) {
      Response response = ErrorResponse(
          bhttp::status::unauthorized, "unauthorized",
          route.access == Access::kWrite
              ? "this endpoint needs the header \"Authorization: Bearer <token>\" with the "
                "server's write token"
              : "this server needs a read token: send \"Authorization: Bearer <token>\" with the "
                "read token (or the write token)");
      response.set(bhttp::field::www_authenticate, "Bearer");
      return response;
    }
    request.params = std::move(params);
    return Invoke(route.handler, request);
  }
  if (!allowed.empty()) {
    std::string allow;
    for (const std::string& method : allowed) allow += (allow.empty() ? "" : ", ") + method;
    Response response = ErrorResponse(bhttp::status::method_not_allowed, "method_not_allowed",
                                      std::string(raw.method_string()) + " is not allowed on " +
                                          request.path + "; allowed: " + allow);
    response.set(bhttp::field::allow, allow);
    return response;
  }
  return ErrorResponse(bhttp::status::not_found, "not_found", "no such endpoint: " + request.path);
}

}  // namespace lossguard::http
