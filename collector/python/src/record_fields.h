#pragma once
// Records made from Collector.record_step's arguments: validated by the wire format's own rules,
// the Hugging Face Trainer's log names accepted, unknown names pointed out. No LibTorch.

#include <pybind11/pybind11.h>

#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "lossguard/wire/step_record.h"

namespace lossguard::python {

// The record Collector.record_step(step, loss, **fields) describes, on top of the collector's
// `defaults` (run, rank, world_size, ...). `fields` may not name run or rank (the collector's),
// nor, `with_window`, what the window describes (ref_loss, tokens, micro, ga_steps, world_size):
// value_error then, as for an invalid record; type_error for a value ToJson refuses.
wire::StepRecord RecordFromArguments(const nlohmann::json& defaults, pybind11::handle step,
                                     pybind11::handle loss, const pybind11::dict& fields,
                                     bool with_window);

// The record `object` describes; pybind11::value_error "lossguard: <what>: <field>: <problem>"
// otherwise.
wire::StepRecord ParseOrRaise(const nlohmann::json& object, const std::string& what);

// Renames the Trainer's log names for wire fields ("learning_rate" -> "lr") in `object`, so that
// its logs can be passed as they are; value_error if both names are given.
void TakeHuggingFaceNames(nlohmann::json& object);

// A wire field whose name differs from `name` only in case, '_' and '-'.
std::optional<std::string_view> SimilarFieldName(std::string_view name);

// Unknown fields are kept by the server as they are (forward compatibility), but a misspelt field
// is then silently missing from every detector: one warning per name not in `warned` (which
// collects them), suggesting the field meant. "epoch", which the Trainer logs and no wire field
// means, is expected.
std::vector<std::string> UnknownFieldWarnings(const wire::StepRecord& record,
                                              std::set<std::string>& warned);

}  // namespace lossguard::python
