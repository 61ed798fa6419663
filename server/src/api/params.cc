#include "api/params.h"

#include <charconv>
#include <cmath>

namespace lossguard::api {

namespace {
std::string Join(std::initializer_list<std::string_view> values) {
  std::string out;
  for (std::string_view value : values) out += (out.empty() ? "" : ", ") + std::string(value);
  return out;
}
}  // namespace

Status QueryParams::RejectUnknown(std::initializer_list<std::string_view> allowed) const {
  for (const auto& [key, value] : request_.query) {
    bool known = false;
    for (std::string_view name : allowed) known = known || key == name;
    if (!known) {
      return Status::Error("unknown query parameter '" + key +
                           "' (this endpoint accepts: " + Join(allowed) + ")");
    }
  }
  return Status::Ok();
}

Result<std::optional<std::int64_t>, std::string> QueryParams::Int(const std::string& name,
                                                                  std::int64_t min,
                                                                  std::int64_t max) const {
  auto it = request_.query.find(name);
  if (it == request_.query.end()) return std::optional<std::int64_t>{};
  const std::string& text = it->second;
  std::int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < min || value > max) {
    return name + " must be an integer in [" + std::to_string(min) + ", " + std::to_string(max) +
           "], but got '" + text + "'";
  }
  return std::optional<std::int64_t>{value};
}

Result<std::optional<double>, std::string> QueryParams::Number(const std::string& name) const {
  auto it = request_.query.find(name);
  if (it == request_.query.end()) return std::optional<double>{};
  const std::string& text = it->second;
  double value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || !std::isfinite(value)) {
    return name + " must be a finite number (e.g. unix seconds), but got '" + text + "'";
  }
  return std::optional<double>{value};
}

std::optional<std::string> QueryParams::String(const std::string& name) const {
  auto it = request_.query.find(name);
  if (it == request_.query.end()) return std::nullopt;
  return it->second;
}

}  // namespace lossguard::api
