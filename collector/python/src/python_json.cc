#include "python_json.h"

#include <string>

#include "lossguard/wire/json_numbers.h"

namespace py = pybind11;

namespace lossguard::python {

namespace {
std::string TypeName(py::handle value) { return py::str(py::type::handle_of(value).attr("__name__")); }
}  // namespace

nlohmann::json ToJson(py::handle value, std::string_view path) {
  if (value.is_none()) return nullptr;
  // bool before int: True is an int in Python.
  if (py::isinstance<py::bool_>(value)) return value.cast<bool>();
  if (py::isinstance<py::int_>(value)) {
    int overflow = 0;
    const long long number = PyLong_AsLongLongAndOverflow(value.ptr(), &overflow);
    if (overflow != 0) {
      throw py::value_error("field '" + std::string(path) + "': " +
                            std::string(py::str(value)) + " does not fit a 64-bit integer");
    }
    return static_cast<std::int64_t>(number);
  }
  if (py::isinstance<py::float_>(value)) return wire::NumberToJson(value.cast<double>());
  if (py::isinstance<py::str>(value)) return value.cast<std::string>();
  if (py::isinstance<py::list>(value) || py::isinstance<py::tuple>(value)) {
    nlohmann::json array = nlohmann::json::array();
    std::size_t index = 0;
    for (py::handle item : value) {
      array.push_back(ToJson(item, std::string(path) + "[" + std::to_string(index++) + "]"));
    }
    return array;
  }
  if (py::isinstance<py::dict>(value)) {
    nlohmann::json object = nlohmann::json::object();
    for (auto [key, item] : value.cast<py::dict>()) {
      if (!py::isinstance<py::str>(key)) {
        throw py::type_error("field '" + std::string(path) + "': keys must be str, but got " +
                             TypeName(key));
      }
      std::string name = key.cast<std::string>();
      object[name] = ToJson(item, std::string(path) + "." + name);
    }
    return object;
  }
  // A 0-d tensor or a NumPy scalar: its Python value. (For a CUDA tensor this synchronises with
  // the device; pass a float to avoid it.)
  if (py::hasattr(value, "item")) {
    py::object item = value.attr("item")();
    if (py::isinstance<py::bool_>(item) || py::isinstance<py::int_>(item) ||
        py::isinstance<py::float_>(item)) {
      return ToJson(item, path);
    }
  }
  throw py::type_error("field '" + std::string(path) + "': cannot send a " + TypeName(value) +
                       " (numbers, str, bool, None, lists and dicts of them, 0-d tensors)");
}

nlohmann::json DictToJson(const py::dict& fields) {
  nlohmann::json object = nlohmann::json::object();
  for (auto [key, item] : fields) {
    if (!py::isinstance<py::str>(key))
      throw py::type_error("record field names must be str, but got " + TypeName(key));
    std::string name = key.cast<std::string>();
    object[name] = ToJson(item, name);
  }
  return object;
}

}  // namespace lossguard::python
