#pragma once
// Real gloo over loopback for the collector's tests: `world` ranks in as many threads, each with
// its own ProcessGroupGloo over one TCPStore.

#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <thread>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <vector>

namespace lossguard::collector {

using RankMain = std::function<void(int rank, const c10::intrusive_ptr<c10d::ProcessGroup>&)>;

// Runs `rank_main` on every rank and returns once all have; an exception on a rank fails the test
// with its message. Build models before calling: initialisation draws from LibTorch's global
// generator, which the rank threads would interleave.
inline void RunGlooRanks(int world, const RankMain& rank_main) {
  c10d::TCPStoreOptions server_options;
  server_options.port = 0;
  server_options.isServer = true;
  server_options.numWorkers = static_cast<std::size_t>(world);
  server_options.waitWorkers = false;
  auto server_store = c10::make_intrusive<c10d::TCPStore>("127.0.0.1", server_options);
  const std::uint16_t port = server_store->getPort();
  std::vector<std::string> errors(static_cast<std::size_t>(world));
  std::vector<std::thread> threads;
  for (int rank = 0; rank < world; ++rank) {
    threads.emplace_back([&, rank] {
      try {
        c10::intrusive_ptr<c10d::Store> store = server_store;
        if (rank != 0) {
          c10d::TCPStoreOptions client_options;
          client_options.port = port;
          client_options.numWorkers = static_cast<std::size_t>(world);
          store = c10::make_intrusive<c10d::TCPStore>("127.0.0.1", client_options);
        }
        auto options = c10d::ProcessGroupGloo::Options::create();
        options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
        c10::intrusive_ptr<c10d::ProcessGroup> group =
            c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world, options);
        rank_main(rank, group);
      } catch (const std::exception& e) {
        errors[static_cast<std::size_t>(rank)] = e.what();
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (int rank = 0; rank < world; ++rank)
    EXPECT_EQ(errors[static_cast<std::size_t>(rank)], "") << "rank " << rank;
}

}  // namespace lossguard::collector
