#pragma once

#include <string_view>

namespace lossguard::http {

enum class HeaderBlock {
  kIncomplete,  // no end of the header block yet: read more
  kComplete,    // the block ends in these bytes (or they are malformed): the parser takes over
  kFolded,      // a header line is continued on the next (obs-fold): refuse the request
};

// Where the header block at the start of `bytes` (a request's first bytes) stands, judged from line
// ends alone. A bare LF counts as complete: the parser refuses it with its own message.
HeaderBlock ScanHeaderBlock(std::string_view bytes);

}  // namespace lossguard::http
