#pragma once
// Running a data-parallel demo: one process per rank.

#include <cstdint>

namespace lossguard::demo {

// Runs `world_size` copies of this program (argv plus --rank R --store-file F), one per rank, and
// waits for them; 0 when all of them exit 0.
int LaunchRanks(int argc, char** argv, std::int64_t world_size);

}  // namespace lossguard::demo
