// libFuzzer target: the server's request path. Bytes go through Beast's request parser (with the
// server's body limit) and, when they form a request, through the real router and REST API on a
// real SQLite store, as a connection's bytes would.
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <cstdint>
#include <filesystem>
#include <memory>

#include "api/api.h"
#include "http/router.h"
#include "store/store.h"

namespace {

struct Server {
  std::filesystem::path dir;
  std::unique_ptr<lossguard::store::Store> store;
  lossguard::http::Router router{"fuzz-token-0123456789abcdef"};
};

Server& Instance() {
  static Server* server = [] {
    auto* s = new Server;
    s->dir = std::filesystem::temp_directory_path() /
             ("lossguard-fuzz-http-" + std::to_string(getpid()));
    std::filesystem::create_directories(s->dir);
    lossguard::store::StoreOptions options;
    options.durability = lossguard::store::Durability::kNormal;
    s->store = std::make_unique<lossguard::store::Store>(s->dir / "fuzz.db", options);
    lossguard::api::RegisterApi(s->router, *s->store, nullptr, {});
    return s;
  }();
  return *server;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace http = boost::beast::http;
  Server& server = Instance();
  http::request_parser<http::string_body> parser;
  parser.body_limit(1 << 20);
  parser.eager(true);
  boost::beast::error_code ec;
  std::size_t offset = 0;
  while (offset < size && !parser.is_done()) {
    std::size_t used = parser.put(boost::asio::buffer(data + offset, size - offset), ec);
    if (ec == http::error::need_more) break;
    if (ec || used == 0) return 0;
    offset += used;
  }
  if (!parser.is_done()) {
    parser.put_eof(ec);
    if (ec || !parser.is_done()) return 0;
  }
  lossguard::http::RawRequest request = parser.release();
  lossguard::http::Response response = server.router.Handle(request);
  response.prepare_payload();
  return 0;
}
