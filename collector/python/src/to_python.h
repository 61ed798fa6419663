#pragma once
// What the C++ collector gives back, in Python's terms. No LibTorch.

#include <pybind11/pybind11.h>

#include <string>

#include "lossguard/collector/guard.h"
#include "lossguard/collector/record_stream.h"

namespace lossguard::python {

// The C++ collector's messages name its C++ methods; a Python user calls them by their Python
// names (Loss() -> loss(), CausalLmCrossEntropy -> causal_lm_loss, ...).
std::string PythonNames(std::string message);

// Collector.guard_step's result: response, action (the guard field's JSON as a dict, or None),
// lr_factor, rollback_to, step_optimizer, stop, rollback.
pybind11::dict GuardDecisionDict(const collector::GuardDecision& decision);

// Collector.stats(): the stream's counters.
pybind11::dict StreamStatsDict(const collector::StreamStats& stats);

}  // namespace lossguard::python
