// lossguard._C: the C++ collector for Python. The package's Python modules (lossguard/*.py) give it
// its documented interface; this file only converts arguments and releases the GIL around C++ work.
// The one LibTorch translation unit of the package.
#include <pybind11/functional.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <torch/csrc/utils/pybind.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "lossguard/collector/collector.h"
#include "lossguard/collector/linear_loss.h"
#include "lossguard/collector/loss.h"
#include "lossguard/wire/record_codec.h"
#include "python_json.h"
#include "record_fields.h"
#include "to_python.h"
#include "warning_queue.h"

namespace py = pybind11;
using namespace pybind11::literals;

namespace lossguard::python {
namespace {

using collector::AccumulationOptions;
using collector::AccumulationWindow;
using collector::CausalLmLossOptions;
using collector::Collector;
using collector::CollectorOptions;
using collector::LabelCount;
using collector::LinearCrossEntropyOptions;
using collector::Reduction;

Reduction ParseReduction(const std::string& name) {
  if (name == "mean") return Reduction::kMean;
  if (name == "sum") return Reduction::kSum;
  if (name == "none") return Reduction::kNone;
  throw py::value_error("reduction must be 'mean', 'sum' or 'none', but got '" + name + "'");
}

LabelCount ParseLabelCount(const std::string& name) {
  if (name == "shifted") return LabelCount::kShifted;
  if (name == "unshifted") return LabelCount::kUnshifted;
  throw py::value_error("label_count must be 'shifted' or 'unshifted', but got '" + name + "'");
}

// A Python callable that C++ may hold and copy without the GIL: the reference is dropped, and the
// call made, with the GIL taken.
std::function<void(torch::Tensor&)> AllReduceFrom(py::object function) {
  std::shared_ptr<py::object> held(new py::object(std::move(function)), [](py::object* object) {
    py::gil_scoped_acquire gil;
    delete object;
  });
  return [held](torch::Tensor& tensor) {
    py::gil_scoped_acquire gil;
    (*held)(tensor);
  };
}

// The C++ collector and the warnings its sender thread leaves for Python.
class PyCollector {
 public:
  // `defaults`: the fields every record gets unless record_step gives them (run, rank,
  // world_size, ...), already validated. `warning_sink`: a Python callable taking a list of str,
  // called from the thread that calls record_step, flush or close (never from the sender thread).
  // Made with the GIL held (it holds a Python object).
  PyCollector(std::unique_ptr<Collector> collector, std::shared_ptr<WarningQueue> warnings,
              nlohmann::json defaults, py::object warning_sink)
      : warnings_(std::move(warnings)),
        defaults_(std::move(defaults)),
        warning_sink_(std::move(warning_sink)),
        collector_(std::move(collector)) {}
  // Destroyed with the GIL held; the stream's destructor waits for its sender thread, which never
  // takes the GIL, so this cannot deadlock. Releasing it lets other Python threads run meanwhile.
  // (No call into Python from a destructor: warnings still held go to stderr.)
  ~PyCollector() {
    CloseStream();
    for (const std::string& message : warnings_->Take())
      std::fprintf(stderr, "%s\n", message.c_str());
  }

  // Collector.record_step, all of it in C++ (it runs at every optimizer step). Records are
  // validated here (the wire format's own rules), so that a record the server would refuse raises
  // at the call.
  bool RecordStep(py::handle step, py::handle loss, py::kwargs fields) {
    Collector& collector = Open();
    AccumulationWindow* window = nullptr;
    if (PyObject* given = PyDict_GetItemString(fields.ptr(), "window")) {
      if (given != Py_None) {
        // lossguard.AccumulationWindow holds the C++ window as _window.
        window = py::handle(given).attr("_window").cast<AccumulationWindow*>();
      }
      PyDict_DelItemString(fields.ptr(), "window");
    }
    wire::StepRecord record = RecordFromArguments(defaults_, step, loss, fields, window != nullptr);
    for (std::string& warning : UnknownFieldWarnings(record, warned_unknown_))
      warnings_->Push(warning);
    bool accepted;
    {
      // The hand-off (and the window's collective, if any) without the GIL: other Python
      // threads (a data loader) run meanwhile.
      py::gil_scoped_release release;
      if (window != nullptr) Collector::Describe(*window, record);
      accepted = collector.Submit(std::move(record));
    }
    LogWarnings();
    return accepted;
  }

  void LogWarnings() {
    if (warnings_->empty() || warning_sink_.is_none()) return;
    warning_sink_(warnings_->Take());
  }

  bool Flush(double timeout_s) {
    Collector& collector = Open();
    bool delivered;
    {
      py::gil_scoped_release release;
      delivered = collector.Flush(Millis(timeout_s));
    }
    LogWarnings();
    return delivered;
  }

  void Close() {
    CloseStream();
    LogWarnings();
  }

  py::dict Stats() const {
    std::optional<collector::StreamStats> stats = final_stats_;
    if (collector_ && collector_->stream() != nullptr) stats = collector_->stream()->stats();
    if (!stats) return py::dict();
    return StreamStatsDict(*stats);
  }

  // Collector.guard_step: the guard's decision for the step, before optimizer.step().
  py::dict GuardStep(std::int64_t step, double loss, std::optional<double> ref_loss,
                     std::optional<double> grad_norm, std::optional<std::int64_t> nonfinite_grads) {
    Collector& collector = Open();
    collector::GuardDecision decision =
        collector.GuardStep(step, collector::StepSignals{.loss = loss,
                                                         .ref_loss = ref_loss,
                                                         .grad_norm = grad_norm,
                                                         .nonfinite_grads = nonfinite_grads});
    LogWarnings();
    return GuardDecisionDict(decision);
  }

  collector::Guard& GuardOf() {
    collector::Guard* guard = Open().guard();
    if (guard == nullptr) throw py::value_error("lossguard: this collector has no guard policy");
    return *guard;
  }

  std::string SpoolPath() const {
    return collector_ && collector_->stream() ? collector_->stream()->spool_path() : "";
  }
  bool closed() const { return !collector_; }
  static std::chrono::milliseconds Millis(double seconds, const char* name = "timeout") {
    if (!(seconds >= 0 && seconds <= 1e9)) {
      throw py::value_error(std::string(name) + " must be a number of seconds >= 0, but got " +
                            std::to_string(seconds));
    }
    return std::chrono::milliseconds(static_cast<std::int64_t>(seconds * 1000));
  }

 private:
  Collector& Open() {
    if (!collector_) throw py::value_error("lossguard: the collector is closed");
    return *collector_;
  }

  void CloseStream() {
    if (!collector_) return;
    std::unique_ptr<Collector> closing = std::move(collector_);
    if (closing->stream() != nullptr) final_stats_ = closing->stream()->stats();
    py::gil_scoped_release release;
    closing.reset();  // the stream's destructor: delivers for up to drain_timeout, spools the rest
  }

  std::shared_ptr<WarningQueue> warnings_;
  std::set<std::string> warned_unknown_;  // unknown field names already warned about
  const nlohmann::json defaults_;
  const py::object warning_sink_;
  std::unique_ptr<Collector> collector_;
  std::optional<collector::StreamStats> final_stats_;  // as close() found them
};

std::unique_ptr<PyCollector> MakeCollector(
    const std::string& server, const std::string& run, const std::string& token,
    const std::string& ca_file, std::optional<std::string> spool_dir, std::int64_t rank,
    std::int64_t world_size, std::int64_t micro_batch_size, std::int64_t ga_steps,
    std::optional<std::int64_t> vocab_size, std::size_t queue_capacity, std::size_t batch_size,
    double flush_interval_s, double request_timeout_s, double drain_timeout_s,
    double spool_retry_interval_s, py::object warning_sink, std::optional<std::string> guard) {
  nlohmann::json defaults = {{"run", run},
                             {"rank", rank},
                             {"world_size", world_size},
                             {"ga_steps", ga_steps},
                             {"micro_batch_size", micro_batch_size}};
  if (vocab_size) defaults["vocab_size"] = *vocab_size;
  // A bad option fails here, before training starts, not at the first record_step.
  nlohmann::json probe = defaults;
  probe["step"] = 0;
  probe["loss"] = 0.0;
  ParseOrRaise(probe, "invalid collector option");
  auto warnings = std::make_shared<WarningQueue>();
  CollectorOptions options = CollectorOptions()
                                 .run(run)
                                 .rank(rank)
                                 .micro_batch_size(micro_batch_size)
                                 .vocab_size(vocab_size)
                                 .spool_dir(spool_dir)
                                 .warn([warnings](std::string_view m) { warnings->Push(m); });
  options.stream()
      .server_url(server)
      .token(token)
      .ca_file(ca_file)
      .queue_capacity(queue_capacity)
      .batch_size(batch_size)
      .flush_interval(PyCollector::Millis(flush_interval_s, "flush_interval"))
      .request_timeout(PyCollector::Millis(request_timeout_s, "request_timeout"))
      .drain_timeout(PyCollector::Millis(drain_timeout_s, "drain_timeout"))
      .spool_retry_interval(PyCollector::Millis(spool_retry_interval_s, "spool_retry_interval"));
  if (guard) options.guard(collector::GuardPolicy::Parse(*guard));  // ValueError naming the entry
  std::unique_ptr<Collector> collector;
  {
    py::gil_scoped_release release;  // opening the spool touches the disk
    collector = std::make_unique<Collector>(std::move(options));
  }
  return std::make_unique<PyCollector>(std::move(collector), std::move(warnings),
                                       std::move(defaults), std::move(warning_sink));
}

// Forward + backward of the C++ call, timed in C++: the baseline of the Python benchmark.
double CppLossSeconds(const torch::Tensor& logits, const torch::Tensor& labels, int iterations) {
  py::gil_scoped_release release;
  torch::Tensor leaf = logits.detach().requires_grad_(true);
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < iterations; ++i) {
    collector::CausalLmCrossEntropy(leaf, labels).backward();
    leaf.mutable_grad().reset();
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace
}  // namespace lossguard::python

PYBIND11_MODULE(_C, m) {
  using namespace lossguard::python;
  using namespace lossguard::collector;
  m.doc() = "lossguard's C++ collector (use the lossguard package, not this module)";

  // Registered translators are tried newest first: DtypeError before std::invalid_argument's
  // default ValueError.
  py::register_exception_translator([](std::exception_ptr error) {
    try {
      if (error) std::rethrow_exception(error);
    } catch (const DtypeError& e) {
      PyErr_SetString(PyExc_TypeError, PythonNames(e.what()).c_str());
    } catch (const std::out_of_range& e) {
      PyErr_SetString(PyExc_IndexError, PythonNames(e.what()).c_str());
    } catch (const std::logic_error& e) {  // invalid arguments, and calls out of order
      PyErr_SetString(PyExc_ValueError, PythonNames(e.what()).c_str());
    }
  });

  m.def(
      "causal_lm_loss",
      [](const torch::Tensor& logits, const torch::Tensor& labels, std::int64_t ignore_index,
         const std::string& reduction, std::optional<std::int64_t> num_items) {
        auto options = CausalLmLossOptions()
                           .ignore_index(ignore_index)
                           .reduction(ParseReduction(reduction))
                           .num_items(num_items);
        py::gil_scoped_release release;
        return CausalLmCrossEntropy(logits, labels, options);
      },
      "logits"_a, "labels"_a, "ignore_index"_a, "reduction"_a, "num_items"_a);

  m.def(
      "linear_cross_entropy",
      [](const torch::Tensor& hidden, const torch::Tensor& weight, const torch::Tensor& labels,
         std::optional<torch::Tensor> bias, std::int64_t ignore_index, const std::string& reduction,
         std::optional<std::int64_t> num_items, bool shift_labels, std::int64_t chunk_tokens,
         std::int64_t chunk_vocab) {
        auto options = LinearCrossEntropyOptions()
                           .ignore_index(ignore_index)
                           .reduction(ParseReduction(reduction))
                           .num_items(num_items)
                           .shift_labels(shift_labels)
                           .chunk_tokens(chunk_tokens)
                           .chunk_vocab(chunk_vocab);
        py::gil_scoped_release release;
        return LinearCrossEntropy(hidden, weight, bias.value_or(torch::Tensor()), labels, options);
      },
      "hidden"_a, "weight"_a, "labels"_a, "bias"_a, "ignore_index"_a, "reduction"_a, "num_items"_a,
      "shift_labels"_a, "chunk_tokens"_a, "chunk_vocab"_a);

  m.def(
      "label_tokens",
      [](const torch::Tensor& labels, const std::string& label_count, std::int64_t ignore_index) {
        LabelCount convention = ParseLabelCount(label_count);
        py::gil_scoped_release release;
        return LabelTokens(labels, convention, ignore_index);
      },
      "labels"_a, "label_count"_a, "ignore_index"_a);

  m.def(
      "grad_stats",
      [](const std::vector<torch::Tensor>& parameters) {
        GradNormStats stats;
        {
          py::gil_scoped_release release;
          stats = ComputeGradNorm(parameters);
        }
        return py::dict("grad_norm"_a = stats.total_norm, "nonfinite_grads"_a = stats.nonfinite);
      },
      "parameters"_a);

  py::class_<AccumulationWindow>(m, "AccumulationWindow")
      .def(py::init([](std::vector<torch::Tensor> labels, std::int64_t ignore_index,
                       const std::string& label_count, py::object all_reduce,
                       std::int64_t world_size, bool gradients_averaged, bool defer_normalisation) {
             auto options = AccumulationOptions()
                                .ignore_index(ignore_index)
                                .label_count(ParseLabelCount(label_count))
                                .gradients_averaged_across_ranks(gradients_averaged)
                                .defer_normalisation(defer_normalisation)
                                .world_size(world_size);
             if (!all_reduce.is_none())
               options.all_reduce_sum(AllReduceFrom(std::move(all_reduce)));
             py::gil_scoped_release release;  // the constructor all-reduces the token count
             return std::make_unique<AccumulationWindow>(std::move(labels), std::move(options));
           }),
           "labels"_a, "ignore_index"_a, "label_count"_a, "all_reduce"_a, "world_size"_a,
           "gradients_averaged"_a, "defer_normalisation"_a)
      .def("normalise_gradients", &AccumulationWindow::NormaliseGradients, "parameters"_a,
           py::call_guard<py::gil_scoped_release>())
      .def("loss", &AccumulationWindow::Loss, "index"_a, "logits"_a,
           py::call_guard<py::gil_scoped_release>())
      .def(
          "linear_loss",
          [](AccumulationWindow& window, std::size_t index, const torch::Tensor& hidden,
             const torch::Tensor& weight, std::optional<torch::Tensor> bias) {
            return window.LinearLoss(index, hidden, weight, bias.value_or(torch::Tensor()));
          },
          "index"_a, "hidden"_a, "weight"_a, "bias"_a, py::call_guard<py::gil_scoped_release>())
      .def("reference_loss", &AccumulationWindow::ReferenceLoss,
           py::call_guard<py::gil_scoped_release>())
      .def_property_readonly("ga_steps", &AccumulationWindow::ga_steps)
      .def_property_readonly("local_tokens", &AccumulationWindow::local_tokens)
      .def_property_readonly("global_tokens", &AccumulationWindow::global_tokens)
      .def_property_readonly("world_size", &AccumulationWindow::world_size)
      .def("micro_batches", [](const AccumulationWindow& window) {
        py::list out;
        for (const MicroBatchStats& mb : window.MicroBatches())
          out.append(
              py::dict("loss"_a = mb.loss, "tokens"_a = mb.tokens, "loss_sum"_a = mb.loss_sum));
        return out;
      });

  m.attr("GUARD_STOP_EXIT_CODE") = lossguard::collector::kGuardStopExitCode;
  py::class_<PyCollector>(m, "Collector")
      .def(py::init(&MakeCollector), "server"_a, "run"_a, "token"_a, "ca_file"_a, "spool_dir"_a,
           "rank"_a, "world_size"_a, "micro_batch_size"_a, "ga_steps"_a, "vocab_size"_a,
           "queue_capacity"_a, "batch_size"_a, "flush_interval_s"_a, "request_timeout_s"_a,
           "drain_timeout_s"_a, "spool_retry_interval_s"_a, "warning_sink"_a, "guard"_a)
      .def("record_step", &PyCollector::RecordStep, "step"_a, "loss"_a)
      .def("guard_step", &PyCollector::GuardStep, "step"_a, "loss"_a, "ref_loss"_a, "grad_norm"_a,
           "nonfinite_grads"_a)
      .def("guard_checkpointed",
           [](PyCollector& c, std::int64_t step) { c.GuardOf().Checkpointed(step); })
      .def("guard_checkpoint_removed",
           [](PyCollector& c, std::int64_t step) { c.GuardOf().CheckpointRemoved(step); })
      .def_property_readonly("guard_lr_scale",
                             [](PyCollector& c) { return c.GuardOf().lr_scale(); })
      .def_property_readonly("guard_acts",
                             [](PyCollector& c) { return c.GuardOf().policy().Acts(); })
      .def_property_readonly("guard_policy",
                             [](PyCollector& c) { return c.GuardOf().policy().ToString(); })
      .def("flush", &PyCollector::Flush, "timeout_s"_a)
      .def("close", &PyCollector::Close)
      .def("stats", &PyCollector::Stats)
      .def_property_readonly("spool_path", &PyCollector::SpoolPath)
      .def_property_readonly("closed", &PyCollector::closed);

  m.def("_cpp_loss_seconds", &CppLossSeconds, "logits"_a, "labels"_a, "iterations"_a,
        "forward + backward of the C++ call, timed in C++ (the Python benchmark's baseline)");
}
