#pragma once
// Python values -> wire-format JSON, for records built from keyword arguments. No LibTorch: a
// tensor or NumPy scalar is read through its item() method.

#include <pybind11/pybind11.h>

#include <nlohmann/json.hpp>
#include <string_view>

namespace lossguard::python {

// None, bool, int, float (non-finite kept, as the wire format's strings), str, lists/tuples and
// dicts with str keys of those, and objects with an item() method (0-d tensors, NumPy scalars).
// Throws pybind11::type_error naming `path` for anything else, pybind11::value_error for an int
// outside int64.
nlohmann::json ToJson(pybind11::handle value, std::string_view path);

// Sets each of `fields` (str keys) in the JSON object `object`, replacing what was there.
void AddFields(const pybind11::dict& fields, nlohmann::json& object);

}  // namespace lossguard::python
