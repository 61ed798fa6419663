#include "python_json.h"

#include <string>

#include "lossguard/wire/json_numbers.h"

namespace py = pybind11;

namespace lossguard::python {

namespace {

std::string TypeName(py::handle value) {
  return py::str(py::type::handle_of(value).attr("__name__"));
}

// Where a value sits in the record ("micro[2].loss"), spelled out only for an error message: a
// record is converted on every training step, and building the name of every element costs more
// than converting it.
struct Path {
  const Path* parent = nullptr;
  std::string_view key;  // a field name, or empty for a list element
  std::size_t index = 0;

  std::string str() const {
    if (parent == nullptr) return std::string(key);  // the record itself, or a named root
    std::string prefix = parent->str();
    if (key.empty()) return prefix + "[" + std::to_string(index) + "]";
    return prefix.empty() ? std::string(key) : prefix + "." + std::string(key);
  }
};

nlohmann::json Convert(py::handle value, const Path& path) {
  if (value.is_none()) return nullptr;
  // bool before int: True is an int in Python.
  if (py::isinstance<py::bool_>(value)) return value.ptr() == Py_True;
  if (py::isinstance<py::float_>(value)) return wire::NumberToJson(PyFloat_AS_DOUBLE(value.ptr()));
  if (py::isinstance<py::int_>(value)) {
    int overflow = 0;
    const long long number = PyLong_AsLongLongAndOverflow(value.ptr(), &overflow);
    if (overflow != 0) {
      throw py::value_error("field '" + path.str() + "': " + std::string(py::str(value)) +
                            " does not fit a 64-bit integer");
    }
    return static_cast<std::int64_t>(number);
  }
  if (py::isinstance<py::str>(value)) return value.cast<std::string>();
  if (py::isinstance<py::list>(value) || py::isinstance<py::tuple>(value)) {
    nlohmann::json array = nlohmann::json::array();
    Path element{&path, {}, 0};
    for (py::handle item : value) {
      array.push_back(Convert(item, element));
      ++element.index;
    }
    return array;
  }
  if (py::isinstance<py::dict>(value)) {
    nlohmann::json object = nlohmann::json::object();
    for (auto [key, item] : py::reinterpret_borrow<py::dict>(value)) {
      if (!py::isinstance<py::str>(key)) {
        throw py::type_error("field '" + path.str() + "': keys must be str, but got " +
                             TypeName(key));
      }
      Py_ssize_t size = 0;
      const char* name = PyUnicode_AsUTF8AndSize(key.ptr(), &size);
      if (name == nullptr) throw py::error_already_set();
      std::string_view field(name, static_cast<std::size_t>(size));
      object.emplace(field, Convert(item, Path{&path, field, 0}));
    }
    return object;
  }
  // A 0-d tensor or a NumPy scalar: its Python value. (For a CUDA tensor this synchronises with
  // the device; pass a float to avoid it.)
  if (py::hasattr(value, "item")) {
    py::object item = value.attr("item")();
    if (py::isinstance<py::bool_>(item) || py::isinstance<py::int_>(item) ||
        py::isinstance<py::float_>(item)) {
      return Convert(item, path);
    }
  }
  throw py::type_error("field '" + path.str() + "': cannot send a " + TypeName(value) +
                       " (numbers, str, bool, None, lists and dicts of them, 0-d tensors)");
}

}  // namespace

nlohmann::json ToJson(py::handle value, std::string_view path) {
  return Convert(value, Path{nullptr, path, 0});
}

void AddFields(const py::dict& fields, nlohmann::json& object) {
  for (auto [key, item] : fields) {
    if (!py::isinstance<py::str>(key))
      throw py::type_error("record field names must be str, but got " + TypeName(key));
    std::string name = key.cast<std::string>();
    object[name] = Convert(item, Path{nullptr, name, 0});
  }
}

}  // namespace lossguard::python
