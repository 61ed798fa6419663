#include "api/static_files.h"

#include <algorithm>
#include <fstream>
#include <map>
#include <sstream>

#include "http/responses.h"

namespace lossguard::api {

namespace {
using http::Response;
namespace bhttp = http::bhttp;

std::string ContentType(const std::filesystem::path& file) {
  static const std::map<std::string, std::string> kTypes = {
      {".html", "text/html; charset=utf-8"},
      {".js", "text/javascript; charset=utf-8"},
      {".css", "text/css; charset=utf-8"},
      {".svg", "image/svg+xml"},
      {".png", "image/png"},
      {".json", "application/json"}};
  auto it = kTypes.find(file.extension().string());
  return it == kTypes.end() ? "application/octet-stream" : it->second;
}

// Whether `path` is a regular file whose real location (every symlink resolved) is inside
// `web_root`: a link inside the web root must not serve what lies outside it, and a directory has
// no content to serve.
bool ServableFile(const std::filesystem::path& web_root, const std::filesystem::path& path) {
  std::error_code ec;
  const std::filesystem::path root = std::filesystem::canonical(web_root, ec);
  if (ec) return false;
  const std::filesystem::path real = std::filesystem::canonical(path, ec);
  if (ec || !std::filesystem::is_regular_file(real, ec)) return false;
  auto [root_end, unused] = std::mismatch(root.begin(), root.end(), real.begin(), real.end());
  return root_end == root.end();
}

Response ServeFile(const std::filesystem::path& web_root, const std::string& name,
                   unsigned version) {
  const std::filesystem::path path = web_root / name;
  std::ifstream in(path, std::ios::binary);
  if (!ServableFile(web_root, path) || !in) {
    return http::ErrorResponse(bhttp::status::not_found, "not_found", "no such file: " + name);
  }
  std::ostringstream body;
  body << in.rdbuf();
  Response response{bhttp::status::ok, version};
  response.set(bhttp::field::content_type, ContentType(path));
  // The files change only with a new build; revalidating is cheap on loopback.
  response.set(bhttp::field::cache_control, "no-cache");
  response.body() = body.str();
  response.prepare_payload();
  return response;
}
}  // namespace

void RegisterStaticFiles(http::Router& router, const std::filesystem::path& web_root) {
  // The page and its scripts are open (they hold no data): with a read token, the dashboard asks
  // for it and sends it with its API requests.
  router.Add(
      bhttp::verb::get, "/",
      [web_root](const http::Request& request) {
        if (!std::filesystem::exists(web_root / "index.html")) {
          return http::ErrorResponse(
              bhttp::status::not_found, "no_dashboard",
              "the web dashboard is not in " + web_root.string() +
                  " (build the lossguard_web target, or point --web-root at its output)");
        }
        return ServeFile(web_root, "index.html", request.raw.version());
      },
      http::Access::kOpen);
  router.Add(
      bhttp::verb::get, "/assets/{file}",
      [web_root](const http::Request& request) {
        const std::string& file = request.params.at("file");
        // A NUL would end the name the file system sees while the type comes from all of it.
        if (file.find('\0') != std::string::npos) {
          return http::ErrorResponse(bhttp::status::bad_request, "bad_path",
                                     "a file name cannot hold a NUL byte (%00)");
        }
        if (file.empty() || file.front() == '.' || file.find('/') != std::string::npos) {
          return http::ErrorResponse(bhttp::status::not_found, "not_found", "no such file");
        }
        return ServeFile(web_root, file, request.raw.version());
      },
      http::Access::kOpen);
}

}  // namespace lossguard::api
