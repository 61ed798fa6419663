#pragma once
// The collector's one way of reading values from the device to the host.

#include <ATen/record_function.h>
#include <torch/types.h>

#include <utility>
#include <vector>

namespace lossguard::collector::detail {

// Reads one-element tensors as doubles, with one device-to-host copy per device among them (CPU
// tensors are read in place, without waiting for anything). Integer counts are exact up to 2^53.
// Recorded as the RecordFunction scope "lossguard::read_to_host", so that tests (and the
// profiler) see every read the collector makes.
inline std::vector<double> ReadToHost(const std::vector<torch::Tensor>& values) {
  RECORD_USER_SCOPE("lossguard::read_to_host");
  std::vector<double> out(values.size());
  std::vector<std::pair<c10::Device, std::vector<std::size_t>>> by_device;
  for (std::size_t i = 0; i < values.size(); ++i) {
    auto group = by_device.begin();
    while (group != by_device.end() && group->first != values[i].device()) ++group;
    if (group == by_device.end())
      group = by_device.insert(by_device.end(), {values[i].device(), {}});
    group->second.push_back(i);
  }
  for (const auto& [device, indices] : by_device) {
    std::vector<torch::Tensor> flat;
    flat.reserve(indices.size());
    for (std::size_t i : indices)
      flat.push_back(values[i].detach().reshape({1}).to(torch::kFloat64));
    torch::Tensor host = torch::cat(flat).to(torch::kCPU).contiguous();
    const double* data = host.data_ptr<double>();
    for (std::size_t k = 0; k < indices.size(); ++k) out[indices[k]] = data[k];
  }
  return out;
}

}  // namespace lossguard::collector::detail
