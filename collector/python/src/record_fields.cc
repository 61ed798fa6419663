#include "record_fields.h"

#include <pybind11/pybind11.h>

#include <cctype>
#include <initializer_list>
#include <utility>

#include "lossguard/wire/record_codec.h"
#include "python_json.h"

namespace lossguard::python {

wire::StepRecord ParseOrRaise(const nlohmann::json& object, const std::string& what) {
  auto parsed = wire::ParseRecord(object, 0);
  if (!parsed) {
    const wire::RecordError& error = parsed.error();
    throw pybind11::value_error("lossguard: " + what + ": " +
                                (error.field.empty() ? "" : error.field + ": ") + error.message);
  }
  return std::move(parsed).value();
}

wire::StepRecord RecordFromArguments(const nlohmann::json& defaults, pybind11::handle step,
                                     pybind11::handle loss, const pybind11::dict& fields,
                                     bool with_window) {
  auto reject_given = [&](std::initializer_list<const char*> names, const char* why) {
    for (const char* name : names) {
      if (fields.contains(name)) throw pybind11::value_error(std::string("'") + name + why);
    }
  };
  if (with_window) {
    reject_given({"ref_loss", "tokens", "micro", "ga_steps", "world_size"},
                 "' given both as a field and by the window");
  }
  reject_given({"run", "rank"}, "' belongs to the collector (set it when creating the Collector)");
  nlohmann::json object = defaults;
  AddFields(fields, object);
  TakeHuggingFaceNames(object);
  object["step"] = ToJson(step, "step");
  object["loss"] = ToJson(loss, "loss");
  return ParseOrRaise(object, "invalid record");
}

void TakeHuggingFaceNames(nlohmann::json& object) {
  // "grad_norm" is already the wire name.
  static constexpr std::pair<const char*, const char*> kAliases[] = {{"learning_rate", "lr"}};
  for (const auto& [alias, field] : kAliases) {
    auto given = object.find(alias);
    if (given == object.end()) continue;
    if (object.contains(field)) {
      throw pybind11::value_error(std::string("'") + alias + "' and '" + field +
                                  "' are the same field; give one of them");
    }
    nlohmann::json value = std::move(*given);
    object.erase(alias);
    object[field] = std::move(value);
  }
}

std::optional<std::string_view> SimilarFieldName(std::string_view name) {
  auto folded = [](std::string_view text) {
    std::string out;
    for (char c : text) {
      if (c != '_' && c != '-')
        out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    return out;
  };
  const std::string target = folded(name);
  for (std::string_view field : wire::KnownFieldNames()) {
    if (folded(field) == target) return field;
  }
  return std::nullopt;
}

std::vector<std::string> UnknownFieldWarnings(const wire::StepRecord& record,
                                              std::set<std::string>& warned) {
  std::vector<std::string> warnings;
  for (const auto& [name, value] : record.extra.items()) {
    if (name == "epoch" || !warned.insert(name).second) continue;
    std::string message = "lossguard: '" + name +
                          "' is not a wire-format field: the server keeps it as given, and no "
                          "detector reads it";
    if (std::optional<std::string_view> meant = SimilarFieldName(name)) {
      message += " (did you mean '" + std::string(*meant) + "'?)";
    }
    warnings.push_back(std::move(message));
  }
  return warnings;
}

}  // namespace lossguard::python
