#include "lossguard/collector/guard_policy.h"

#include <array>
#include <charconv>
#include <cmath>
#include <stdexcept>

namespace lossguard::collector {

namespace {

constexpr std::array<GuardResponse, 5> kAllResponses = {
    GuardResponse::kWarn, GuardResponse::kLowerLr, GuardResponse::kSkipStep,
    GuardResponse::kRollback, GuardResponse::kStop};

std::string_view Trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t' || text.front() == '\n'))
    text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t' || text.back() == '\n'))
    text.remove_suffix(1);
  return text;
}

[[noreturn]] void Refuse(std::string_view entry, const std::string& why) {
  throw std::invalid_argument("guard policy entry \"" + std::string(entry) + "\": " + why);
}

std::string KindNames() {
  std::string out;
  for (analyzers::Kind kind : analyzers::kAllKinds)
    out += std::string(out.empty() ? "" : ", ") + std::string(analyzers::KindName(kind));
  return out;
}

std::int64_t ParseBound(std::string_view entry, std::string_view value) {
  std::int64_t out = -1;
  auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), out);
  if (ec != std::errc() || end != value.data() + value.size() || out < 0 || out > 1'000'000)
    Refuse(entry, "expected an integer from 0 to 1000000, but got \"" + std::string(value) + "\"");
  return out;
}

double ParseFactor(std::string_view entry, std::string_view value) {
  double out = NAN;
  auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), out);
  if (ec != std::errc() || end != value.data() + value.size() || !(out > 0 && out < 1))
    Refuse(entry, "the lower_lr factor must be a number in (0, 1), but got \"" +
                      std::string(value) + "\"");
  return out;
}

GuardRule ParseRule(std::string_view entry, std::string_view key, std::string_view value) {
  GuardRule rule;
  const std::size_t colon = key.find(':');
  const std::string_view kind = Trim(key.substr(0, colon));
  if (kind != "*") {
    rule.kind = analyzers::ParseKind(kind);
    if (!rule.kind)
      Refuse(entry, "unknown kind \"" + std::string(kind) + "\" (kinds: " + KindNames() +
                        ", or * for every kind; settings: max_rollbacks, max_lr_lowerings, "
                        "max_consecutive_skips, local)");
  }
  if (colon != std::string_view::npos) {
    const std::string_view severity = Trim(key.substr(colon + 1));
    auto parsed = analyzers::ParseSeverity(severity);
    if (!parsed || *parsed == analyzers::Severity::kInfo)
      Refuse(entry,
             "severity must be warning or critical, but got \"" + std::string(severity) + "\"");
    rule.at_least = *parsed;
  }
  const std::size_t value_colon = value.find(':');
  const std::string_view response = Trim(value.substr(0, value_colon));
  bool known = false;
  for (GuardResponse candidate : kAllResponses) {
    if (GuardResponseName(candidate) == response) {
      rule.response = candidate;
      known = true;
    }
  }
  if (!known)
    Refuse(entry, "unknown response \"" + std::string(response) +
                      "\" (warn, lower_lr, skip_step, rollback, stop)");
  if (value_colon != std::string_view::npos) {
    if (rule.response != GuardResponse::kLowerLr)
      Refuse(entry, "only lower_lr takes a factor (lower_lr:0.5)");
    rule.lr_factor = ParseFactor(entry, Trim(value.substr(value_colon + 1)));
  }
  return rule;
}

}  // namespace

std::string_view GuardResponseName(GuardResponse response) {
  switch (response) {
    case GuardResponse::kWarn:
      return "warn";
    case GuardResponse::kLowerLr:
      return "lower_lr";
    case GuardResponse::kSkipStep:
      return "skip_step";
    case GuardResponse::kRollback:
      return "rollback";
    case GuardResponse::kStop:
      return "stop";
  }
  return "warn";
}

GuardPolicy GuardPolicy::Parse(std::string_view spec) {
  GuardPolicy policy;
  while (!spec.empty()) {
    const std::size_t comma = spec.find(',');
    const std::string_view entry = Trim(spec.substr(0, comma));
    spec = comma == std::string_view::npos ? std::string_view() : spec.substr(comma + 1);
    if (entry.empty()) continue;
    const std::size_t equals = entry.find('=');
    if (equals == std::string_view::npos)
      Refuse(entry, "expected KIND[:SEVERITY]=RESPONSE or a bound such as max_rollbacks=3");
    const std::string_view key = Trim(entry.substr(0, equals));
    const std::string_view value = Trim(entry.substr(equals + 1));
    if (key == "max_rollbacks") {
      policy.max_rollbacks = ParseBound(entry, value);
    } else if (key == "max_lr_lowerings") {
      policy.max_lr_lowerings = ParseBound(entry, value);
    } else if (key == "max_consecutive_skips") {
      policy.max_consecutive_skips = ParseBound(entry, value);
    } else if (key == "local") {
      if (value != "on" && value != "off")
        Refuse(entry, "local must be on or off, but got \"" + std::string(value) + "\"");
      policy.local_checks = value == "on";
    } else {
      GuardRule rule = ParseRule(entry, key, value);
      for (const GuardRule& other : policy.rules) {
        if (other.kind == rule.kind && other.at_least == rule.at_least)
          Refuse(entry, "a second rule for the same kind and severity");
      }
      policy.rules.push_back(rule);
    }
  }
  return policy;
}

const GuardRule* GuardPolicy::RuleFor(analyzers::Kind kind, analyzers::Severity severity) const {
  const GuardRule* best = nullptr;
  auto rank = [](const GuardRule& rule) {
    return std::pair(rule.kind.has_value(), static_cast<int>(rule.at_least));
  };
  for (const GuardRule& rule : rules) {
    if ((rule.kind && *rule.kind != kind) || severity < rule.at_least) continue;
    if (best == nullptr || rank(rule) > rank(*best)) best = &rule;
  }
  return best;
}

std::string GuardPolicy::ToString() const {
  std::string out;
  for (const GuardRule& rule : rules) {
    out += rule.kind ? std::string(analyzers::KindName(*rule.kind)) : "*";
    if (rule.at_least != analyzers::Severity::kCritical) out += ":warning";
    out += "=" + std::string(GuardResponseName(rule.response));
    if (rule.response == GuardResponse::kLowerLr) {
      char factor[32];
      auto [end, ec] = std::to_chars(factor, factor + sizeof factor, rule.lr_factor);
      out += ":" + std::string(factor, end);
    }
    out += ",";
  }
  out += "max_rollbacks=" + std::to_string(max_rollbacks) +
         ",max_lr_lowerings=" + std::to_string(max_lr_lowerings) +
         ",max_consecutive_skips=" + std::to_string(max_consecutive_skips) +
         (local_checks ? "" : ",local=off");
  return out;
}

bool GuardPolicy::Acts() const {
  for (const GuardRule& rule : rules)
    if (rule.response != GuardResponse::kWarn) return true;
  return false;
}

}  // namespace lossguard::collector
