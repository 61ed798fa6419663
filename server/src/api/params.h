#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>

#include "http/router.h"
#include "lossguard/base/result.h"

namespace lossguard::api {

// Query-string validation for handlers. Each accessor returns the value, or an error message that
// names the parameter and the value ("max_points must be an integer in [10, 100000], but got 'x'").
class QueryParams {
 public:
  explicit QueryParams(const http::Request& request) : request_(request) {}

  // Error for a parameter outside `allowed` (typos such as max_point= must not be silently
  // ignored).
  Status RejectUnknown(std::initializer_list<std::string_view> allowed) const;

  Result<std::optional<std::int64_t>, std::string> Int(const std::string& name, std::int64_t min,
                                                       std::int64_t max) const;
  // A finite decimal number (e.g. unix seconds).
  Result<std::optional<double>, std::string> Number(const std::string& name) const;
  // One of `values`, given by its name.
  template <typename Value, std::size_t N, typename NameOf>
  Result<std::optional<Value>, std::string> Parsed(const std::string& name,
                                                   const std::array<Value, N>& values,
                                                   NameOf name_of) const {
    std::optional<std::string> text = String(name);
    if (!text) return std::optional<Value>{};
    std::string names;
    for (const Value& value : values) {
      if (name_of(value) == *text) return std::optional<Value>{value};
      (names += names.empty() ? "" : ", ") += name_of(value);
    }
    return name + " must be one of " + names + ", but got '" + *text + "'";
  }
  std::optional<std::string> String(const std::string& name) const;
  bool Has(const std::string& name) const { return request_.query.contains(name); }

 private:
  const http::Request& request_;
};

}  // namespace lossguard::api
